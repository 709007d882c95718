#include "kmeans.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "assign.h"

namespace uniroute {

namespace {

double sqdist(const float* a, const float* b, size_t d) {
  double s = 0.0;
  for (size_t j = 0; j < d; ++j) {
    double t = static_cast<double>(a[j]) - b[j];
    s += t * t;
  }
  return s;
}

// k-means++ (Arthur & Vassilvitskii 2007) with 2 + log(k) local trials per centre, as scikit-learn does.
void seed_plus_plus(const float* X, size_t n, size_t d, size_t k, Rng& rng, float* C, int threads) {
  std::vector<double> closest(n);
  size_t first = rng.below(n);
  std::memcpy(C, X + first * d, d * sizeof(float));
  parallel_for(n, threads, 1024, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) closest[i] = sqdist(X + i * d, C, d);
    return Status::Ok();
  });
  const size_t trials = 2 + static_cast<size_t>(std::log(static_cast<double>(k)));
  std::vector<double> cand_best(n), best_pot(n);
  for (size_t c = 1; c < k; ++c) {
    double pot = 0.0;
    for (double v : closest) pot += v;
    size_t best_idx = 0;
    double best_total = std::numeric_limits<double>::infinity();
    for (size_t t = 0; t < trials; ++t) {
      size_t cand;
      if (pot <= 0.0) {
        cand = rng.below(n);
      } else {
        double r = rng.uniform() * pot, acc = 0.0;
        cand = n - 1;
        for (size_t i = 0; i < n; ++i) {
          acc += closest[i];
          if (acc > r) {
            cand = i;
            break;
          }
        }
      }
      const float* xc = X + cand * d;
      parallel_for(n, threads, 1024, [&](size_t b, size_t e, int) {
        for (size_t i = b; i < e; ++i) cand_best[i] = std::min(closest[i], sqdist(X + i * d, xc, d));
        return Status::Ok();
      });
      double total = 0.0;
      for (double v : cand_best) total += v;
      if (total < best_total) {
        best_total = total;
        best_idx = cand;
        best_pot.swap(cand_best);
      }
    }
    std::memcpy(C + c * d, X + best_idx * d, d * sizeof(float));
    closest.swap(best_pot);
    best_pot.resize(n);
  }
}

Status lloyd(const float* X, size_t n, size_t d, size_t k, const KMeansOptions& opt, Rng& rng, float* C,
             int32_t* assign, KMeansResult& res) {
  const int threads = opt.threads;
  seed_plus_plus(X, n, d, k, rng, C, threads);
  std::vector<float> dist(n);
  std::vector<int32_t> prev(n, -1);
  std::vector<double> sums(k * d);
  std::vector<size_t> counts(k);
  double prev_obj = std::numeric_limits<double>::infinity();
  res = KMeansResult{};
  bool converged = false;
  for (uint32_t it = 0; it < std::max<uint32_t>(1, opt.max_iter); ++it) {
    Status st = assign_nearest(X, n, d, C, k, assign, dist.data(), threads);
    if (!st.ok()) return st;
    // objective (exact, in double) and change count
    double obj = 0.0;
    size_t changed = 0;
    for (size_t i = 0; i < n; ++i) {
      obj += sqdist(X + i * d, C + static_cast<size_t>(assign[i]) * d, d);
      changed += assign[i] != prev[i];
    }
    res.iterations = it + 1;
    res.inertia = obj;
    if (changed == 0 || (std::isfinite(prev_obj) && prev_obj - obj <= opt.tol * std::max(prev_obj, 1e-30))) {
      converged = true;
      break;
    }
    prev_obj = obj;
    std::memcpy(prev.data(), assign, n * sizeof(int32_t));
    // update
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < n; ++i) {
      size_t c = static_cast<size_t>(assign[i]);
      counts[c]++;
      const float* x = X + i * d;
      double* s = sums.data() + c * d;
      for (size_t j = 0; j < d; ++j) s[j] += x[j];
    }
    std::vector<char> taken(n, 0);
    for (size_t c = 0; c < k; ++c) {
      if (counts[c] > 0) {
        for (size_t j = 0; j < d; ++j) C[c * d + j] = static_cast<float>(sums[c * d + j] / counts[c]);
      } else {
        // empty cluster: re-seed at the point farthest from its centroid (deterministic), not yet used
        size_t far = 0;
        double fd = -1.0;
        for (size_t i = 0; i < n; ++i)
          if (!taken[i] && dist[i] > fd) {
            fd = dist[i];
            far = i;
          }
        taken[far] = 1;
        dist[far] = 0.0f;
        std::memcpy(C + c * d, X + far * d, d * sizeof(float));
        res.reseeded++;
      }
    }
  }
  if (!converged) {  // the last step moved the centroids: make the assignment match them
    Status st = assign_nearest(X, n, d, C, k, assign, dist.data(), threads);
    if (!st.ok()) return st;
    double obj = 0.0;
    for (size_t i = 0; i < n; ++i) obj += sqdist(X + i * d, C + static_cast<size_t>(assign[i]) * d, d);
    res.inertia = obj;
  }
  return Status::Ok();
}

}  // namespace

Status kmeans(const float* X, size_t n, size_t d, size_t k, const KMeansOptions& opt, float* centroids,
              int32_t* assign, KMeansResult& result) {
  if (d == 0) return Status::Invalid("dimension must be at least 1");
  if (k == 0) return Status::Invalid("k must be at least 1");
  if (k > n) return Status::Invalid("k (" + std::to_string(k) + ") exceeds the number of points (" + std::to_string(n) + ")");
  for (size_t i = 0; i < n * d; ++i)
    if (!std::isfinite(X[i])) return Status::Invalid("points contain a non-finite value at index " + std::to_string(i));
  Rng rng(opt.seed);
  std::vector<float> C(k * d);
  std::vector<int32_t> A(n);
  result.inertia = std::numeric_limits<double>::infinity();
  for (uint32_t r = 0; r < std::max<uint32_t>(1, opt.n_init); ++r) {
    KMeansResult res;
    Status st = lloyd(X, n, d, k, opt, rng, C.data(), A.data(), res);
    if (!st.ok()) return st;
    if (res.inertia < result.inertia) {
      result = res;
      std::memcpy(centroids, C.data(), k * d * sizeof(float));
      std::memcpy(assign, A.data(), n * sizeof(int32_t));
    }
  }
  return Status::Ok();
}

}  // namespace uniroute
