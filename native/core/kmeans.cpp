#include "kmeans.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>
#include <atomic>

#include "assign.h"
#include "isa.h"

namespace uniroute {

namespace {

// Index of the first i with prefix[i] > r (prefix: running sums, rising).
size_t search_prefix(const std::vector<double>& prefix, double r) {
  const size_t i = static_cast<size_t>(std::upper_bound(prefix.begin(), prefix.end(), r) - prefix.begin());
  return std::min(i, prefix.size() - 1);
}

// A bound on |computed - true| of a squared distance ||x||^2 - 2 x.c + ||c||^2 in float, as a multiple of
// (||x||^2 + ||c||^2): each of the three terms is within d + 2 roundings of it; a factor of 4 to spare. The
// prunings below skip a distance only when it clears this bound, so that the kernel's answer is the same.
double distance_rounding(size_t d) { return 4.0 * (3.0 * static_cast<double>(d) + 8.0) * 0x1p-24; }

// k-means++ (Arthur & Vassilvitskii 2007) with 2 + log(k) local trials per centre, as scikit-learn does: the
// trials of a centre are drawn together (binary search in the running sum of the potentials) and their distances
// to every point computed at once by the blocked kernel (||x||^2 - 2 x.c + ||c||^2), on the thread pool.
//
// A point whose trials all lie too far to come closer than its nearest centre so far is skipped (its distances
// set to +inf): by the triangle inequality, |cand - x| >= |cand - c| - |x - c| with c that centre, and when that
// bound, less the rounding of the computed distance, is still >= closest, the computed distance would be >=
// closest too, so min(closest, distance), the only use of it, is closest either way: the same centres, the same
// potentials, bit for bit, at a fraction of the dot products where the data has clusters.
uint64_t seed_plus_plus(const float* X, const float* xx, size_t n, size_t d, size_t k, Rng& rng, float* C, int threads,
                        bool prune) {
  std::vector<double> closest(n), prefix(n);
  const size_t trials = 2 + static_cast<size_t>(std::log(static_cast<double>(k)));
  std::vector<float> cands(trials * d), dots(n * trials);
  std::vector<size_t> idx(trials), chosen;  // chosen: the points taken as centres, in order
  std::vector<uint32_t> owner(n, 0);        // the centre that gave closest[i]
  const double kRound = distance_rounding(d);
  std::vector<double> cc;  // cc[t * k + j]: squared distance of trial t to centre j, in double
  std::vector<uint8_t> skip(n, 0);
  uint64_t total_skipped = 0;
  const KernelTable& kt = kernels();
  // distances of every point to the candidates in cands[0 .. t): dots[i * trials + c] becomes the squared distance,
  // or +inf for a point that skip[i] marks
  auto distances = [&](size_t t, bool pruned) {
    const PackedCentroids P = pack_centroids(cands.data(), t, d);
    parallel_for(n, threads, 1024, [&](size_t b, size_t e, int) {
      size_t active = 0;
      if (pruned)
        for (size_t i = b; i < e; ++i) active += !skip[i];
      if (!pruned || active == e - b) {
        dot_rows(P, X, b, e, dots.data() + b * trials, trials);
        for (size_t i = b; i < e; ++i)
          for (size_t c = 0; c < t; ++c) {
            float& v = dots[i * trials + c];
            v = std::max(0.0f, xx[i] - 2.0f * v + P.norms[c]);
          }
        return Status::Ok();
      }
      // the points not skipped, in runs of up to 64 (read in place), then their distances scattered back
      constexpr size_t kRun = 64;
      std::vector<float> out(kRun * trials);
      std::vector<size_t> at(kRun);
      size_t i = b;
      while (i < e) {
        size_t g = 0;
        for (; i < e && g < kRun; ++i) {
          if (skip[i]) {
            for (size_t c = 0; c < t; ++c) dots[i * trials + c] = std::numeric_limits<float>::infinity();
            continue;
          }
          at[g++] = i;
        }
        if (g == 0) continue;
        dot_rows_at(P, X, at.data(), g, out.data(), trials);
        for (size_t r = 0; r < g; ++r)
          for (size_t c = 0; c < t; ++c)
            dots[at[r] * trials + c] = std::max(0.0f, xx[at[r]] - 2.0f * out[r * trials + c] + P.norms[c]);
      }
      return Status::Ok();
    });
  };
  const size_t first = rng.below(n);
  std::memcpy(C, X + first * d, d * sizeof(float));
  std::memcpy(cands.data(), C, d * sizeof(float));
  chosen.push_back(first);
  distances(1, false);
  for (size_t i = 0; i < n; ++i) closest[i] = dots[i * trials];
  closest[first] = 0.0;
  cc.assign(trials * k, 0.0);
  for (size_t c = 1; c < k; ++c) {
    double pot = 0.0;
    for (size_t i = 0; i < n; ++i) prefix[i] = (pot += closest[i]);
    for (size_t t = 0; t < trials; ++t) {
      idx[t] = pot <= 0.0 ? rng.below(n) : search_prefix(prefix, rng.uniform() * pot);
      std::memcpy(cands.data() + t * d, X + idx[t] * d, d * sizeof(float));
    }
    size_t skipped = 0;
    if (prune)  // each trial's distance to each centre so far (trials x c x d: small beside the n x trials x d to come)
      for (size_t t = 0; t < trials; ++t)
        for (size_t j = 0; j < c; ++j) cc[t * k + j] = kt.sqdist(X + idx[t] * d, X + chosen[j] * d, d);
    for (size_t i = 0; i < n && prune; ++i) {
      const uint32_t o = owner[i];
      const double xi = xx[i], rx = std::sqrt(closest[i] + kRound * (xi + xx[chosen[o]]));
      bool all = true;
      for (size_t t = 0; t < trials && all; ++t) {
        const double lb = std::sqrt(cc[t * k + o]) * (1.0 - 1e-12) - rx;
        all = lb > 0.0 && lb * lb >= closest[i] + kRound * (xi + xx[idx[t]]);
      }
      skip[i] = all;
      skipped += all;
    }
    distances(trials, skipped > 0);
    total_skipped += skipped;
    // the trial that leaves the smallest potential wins
    size_t best = 0;
    double best_total = std::numeric_limits<double>::infinity();
    for (size_t t = 0; t < trials; ++t) {
      double total = 0.0;
      for (size_t i = 0; i < n; ++i) total += std::min<double>(closest[i], dots[i * trials + t]);
      if (total < best_total) {
        best_total = total;
        best = t;
      }
    }
    std::memcpy(C + c * d, X + idx[best] * d, d * sizeof(float));
    chosen.push_back(idx[best]);
    for (size_t i = 0; i < n; ++i) {
      const double v = dots[i * trials + best];
      if (v < closest[i]) {
        closest[i] = v;
        owner[i] = static_cast<uint32_t>(c);
      }
    }
    closest[idx[best]] = 0.0;
    owner[idx[best]] = static_cast<uint32_t>(c);
  }
  return total_skipped;
}

Status lloyd(const float* X, const float* xx, size_t n, size_t d, size_t k, const KMeansOptions& opt, Rng& rng,
             float* C, int32_t* assign, KMeansResult& res) {
  const int threads = opt.threads;
  const uint64_t skipped = seed_plus_plus(X, xx, n, d, k, rng, C, threads, opt.prune);
  std::vector<float> dist(n);
  // sq[i]: point i's squared distance to centroid sq_of[i] as the objective computes it (kt.sqdist), from the last
  // assignment step's bound check (-1: none); the objective reuses it where the point stayed with that centroid
  std::vector<int32_t> sq_of(n, -1);
  std::vector<double> sq(n);
  bool dist_stale = false;
  const KernelTable& kt = kernels();
  const double kRound = distance_rounding(d);
  // The nearest centroid of every point, as assign_nearest gives it, skipping the points whose centroid no other
  // can be nearer to: with h_a half the distance from centroid a to its nearest other, |x - c| >= 2 h_a - |x - a|
  // for every other c, so when (2 h_a - |x - a|)^2 exceeds |x - a|^2 by more than twice the rounding bound of the
  // kernel's squared distances, the kernel would pick a again. The others go through the kernel, read in place.
  auto assign_step = [&](bool first) -> Status {
    if (first || !opt.prune) {
      std::fill(sq_of.begin(), sq_of.end(), -1);
      dist_stale = false;
      return assign_nearest(X, n, d, C, k, assign, dist.data(), threads);
    }
    const PackedCentroids P = pack_centroids(C, k, d);
    std::vector<double> half(k, std::numeric_limits<double>::infinity());
    double cmax = 0.0;  // the largest ||c||^2 (the packing's norms: the kernel's own)
    for (size_t a = 0; a < k; ++a) {
      cmax = std::max(cmax, static_cast<double>(P.norms[a]));
      for (size_t c = a + 1; c < k; ++c) {
        const double h = 0.5 * std::sqrt(kt.sqdist(C + a * d, C + c * d, d));
        half[a] = std::min(half[a], h);
        half[c] = std::min(half[c], h);
      }
    }
    std::atomic<uint64_t> skipped_here{0};
    Status st = parallel_for(n, threads, 1024, [&](size_t b, size_t e, int) {
      std::vector<size_t> at;
      at.reserve(e - b);
      uint64_t mine = 0;
      for (size_t i = b; i < e; ++i) {
        const size_t a = static_cast<size_t>(assign[i]);
        const double s2 = kt.sqdist(X + i * d, C + a * d, d);
        sq[i] = s2;
        sq_of[i] = static_cast<int32_t>(a);
        const double lb = 2.0 * half[a] * (1.0 - 1e-12) - std::sqrt(s2 * (1.0 + 1e-9));
        if (lb > 0.0 && lb * lb > s2 * (1.0 + 1e-9) + 2.0 * kRound * (xx[i] + cmax))
          ++mine;
        else
          at.push_back(i);
      }
      std::vector<int32_t> idx(at.size());
      std::vector<float> dd(at.size());
      assign_rows_at(P, X, at.data(), at.size(), idx.data(), dd.data());
      for (size_t r = 0; r < at.size(); ++r) {
        assign[at[r]] = idx[r];
        dist[at[r]] = dd[r];
      }
      skipped_here += mine;
      return Status::Ok();
    });
    res.lloyd_skipped += skipped_here.load();
    dist_stale = skipped_here.load() > 0;
    return st;
  };
  std::vector<int32_t> prev(n, -1);
  std::vector<double> sums(k * d);
  std::vector<size_t> counts(k);
  double prev_obj = std::numeric_limits<double>::infinity();
  res = KMeansResult{};
  res.seeding_skipped = skipped;
  bool converged = false;
  // the objective in double, on the thread pool (one partial sum per part, added in order: deterministic)
  auto objective = [&]() {
    const size_t parts = 64;
    std::vector<double> part(parts, 0.0);
    parallel_for(parts, threads, 1, [&](size_t b, size_t e, int) {
      for (size_t p = b; p < e; ++p) {
        const size_t i0 = n * p / parts, i1 = n * (p + 1) / parts;
        double s = 0.0;
        for (size_t i = i0; i < i1; ++i)
          s += sq_of[i] == assign[i] ? sq[i] : kt.sqdist(X + i * d, C + static_cast<size_t>(assign[i]) * d, d);
        part[p] = s;
      }
      return Status::Ok();
    });
    double obj = 0.0;
    for (double v : part) obj += v;
    return obj;
  };
  for (uint32_t it = 0; it < std::max<uint32_t>(1, opt.max_iter); ++it) {
    Status st = assign_step(it == 0);
    if (!st.ok()) return st;
    const double obj = objective();
    size_t changed = 0;
    for (size_t i = 0; i < n; ++i) changed += assign[i] != prev[i];
    res.iterations = it + 1;
    res.inertia = obj;
    if (changed == 0 || (std::isfinite(prev_obj) && prev_obj - obj <= opt.tol * std::max(prev_obj, 1e-30))) {
      converged = true;
      break;
    }
    prev_obj = obj;
    std::memcpy(prev.data(), assign, n * sizeof(int32_t));
    // update: per-centroid sums, split by dimension across the pool (each part owns a column range: no races)
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < n; ++i) counts[static_cast<size_t>(assign[i])]++;
    if (dist_stale && std::count(counts.begin(), counts.end(), size_t{0}) > 0) {
      // an empty cluster is re-seeded by the points' distances: those the step kept get theirs from the kernel
      // (the same assignment, by the bound)
      st = assign_step(true);
      if (!st.ok()) return st;
    }
    parallel_for(d, threads, 16, [&](size_t jb, size_t je, int) {
      for (size_t c = 0; c < k; ++c) std::fill(sums.begin() + c * d + jb, sums.begin() + c * d + je, 0.0);
      for (size_t i = 0; i < n; ++i) {
        const float* x = X + i * d;
        double* sr = sums.data() + static_cast<size_t>(assign[i]) * d;
        for (size_t j = jb; j < je; ++j) sr[j] += x[j];
      }
      return Status::Ok();
    });
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
    Status st = assign_step(true);
    if (!st.ok()) return st;
    res.inertia = objective();
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
  std::vector<float> xx(n);
  Status norms = parallel_for(n, opt.threads, 1024, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) xx[i] = squared_norm(X + i * d, d);
    return Status::Ok();
  });
  if (!norms.ok()) return norms;
  Rng rng(opt.seed);
  std::vector<float> C(k * d);
  std::vector<int32_t> A(n);
  result.inertia = std::numeric_limits<double>::infinity();
  uint64_t skipped = 0;
  for (uint32_t r = 0; r < std::max<uint32_t>(1, opt.n_init); ++r) {
    KMeansResult res;
    Status st = lloyd(X, xx.data(), n, d, k, opt, rng, C.data(), A.data(), res);
    if (!st.ok()) return st;
    skipped += res.seeding_skipped;
    if (res.inertia < result.inertia) {
      result = res;
      std::memcpy(centroids, C.data(), k * d * sizeof(float));
      std::memcpy(assign, A.data(), n * sizeof(int32_t));
    }
  }
  result.seeding_skipped = skipped;
  return Status::Ok();
}

}  // namespace uniroute
