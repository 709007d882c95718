#include "score.h"

#include <algorithm>
#include <limits>
#include <string>

namespace uniroute {

namespace {
// The argmin among the allowed LLMs, restricted to those whose flag in `need` (stride p.evidence_stride()) is set.
inline int32_t argmin_among(const Pool& p, const float* g, const uint8_t* allowed, const uint8_t* need) {
  // the score in double: at a large lambda, float would round the predicted errors away (lambda * cost ~ 1e8)
  int32_t best = -1;
  double bs = std::numeric_limits<double>::infinity();
  float bc = 0.0f;
  for (size_t j = 0; j < p.m; ++j) {
    if (allowed && !allowed[j]) continue;
    if (need && !need[j * p.evidence_stride()]) continue;
    const double s = static_cast<double>(g[j]) + static_cast<double>(p.lambda) * static_cast<double>(p.cost[j]);
    if (best < 0 || s < bs || (s == bs && p.cost[j] < bc)) {
      best = static_cast<int32_t>(j);
      bs = s;
      bc = p.cost[j];
    }
  }
  return best;
}

// Evidence first: among the LLMs with evidence in the prompt's cell, else among all the allowed ones.
inline int32_t argmin_scores(const Pool& p, const float* g, const uint8_t* allowed, int32_t cell) {
  if (p.evidence && cell >= 0) {
    const int32_t b = argmin_among(p, g, allowed, p.evidence + static_cast<size_t>(cell));
    if (b >= 0) return b;
  }
  return argmin_among(p, g, allowed, nullptr);
}

inline float clamp01(float x) { return std::min(1.0f - 1e-6f, std::max(1e-6f, x)); }
}  // namespace

// Where the predicted errors go: the caller's row, or scratch space (on the stack for up to 256 LLMs).
struct GammaRow {
  float local[256];
  std::vector<float> heap;
  float* g;
  GammaRow(size_t m, float* gamma) : g(gamma) {
    if (!g) {
      if (m <= 256) {
        g = local;
      } else {
        heap.resize(m);
        g = heap.data();
      }
    }
  }
};

int32_t score_hard(const Pool& p, int32_t cluster, const uint8_t* allowed, float* gamma, float r, int32_t cell) {
  GammaRow row(p.m, gamma);
  float* g = row.g;
  const size_t c = static_cast<size_t>(cluster);
  if (p.psi_logit) {
    const float shift = p.slope * r;
    for (size_t j = 0; j < p.m; ++j) g[j] = sigmoidf(p.psi_logit[j * p.k + c] + shift);
  } else {
    for (size_t j = 0; j < p.m; ++j) g[j] = p.psi[j * p.k + c];
  }
  return argmin_scores(p, g, allowed, cell >= 0 ? cell : (p.ke ? -1 : cluster));
}

int32_t score_soft(const Pool& p, const float* z, const uint8_t* allowed, float* gamma, float r, int32_t cell) {
  GammaRow row(p.m, gamma);
  float* g = row.g;
  const float shift = p.slope * r;
  for (size_t j = 0; j < p.m; ++j) {
    const float* psi = p.psi + j * p.k;
    float s = 0.0f;
    for (size_t c = 0; c < p.k; ++c) s += z[c] * psi[c];
    if (p.psi_logit) {
      const float q = clamp01(s);
      s = sigmoidf(std::log(q / (1.0f - q)) + shift);
    }
    g[j] = s;
  }
  return argmin_scores(p, g, allowed, cell);
}

namespace {
Status check_cells(const Pool& p, const int32_t* cells, size_t n) {
  if (!cells) return Status::Ok();
  const size_t ke = p.evidence_stride();
  for (size_t i = 0; i < n; ++i)
    if (cells[i] < 0 || static_cast<size_t>(cells[i]) >= ke)
      return Status::Invalid("evidence cell " + std::to_string(cells[i]) + " at index " + std::to_string(i) +
                             " is outside [0, " + std::to_string(ke) + ")");
  return Status::Ok();
}
}  // namespace

Status score_batch_hard(const Pool& p, const int32_t* clusters, size_t n, int32_t* choice, float* gamma, int threads,
                        const float* resid, const int32_t* cells) {
  for (size_t i = 0; i < n; ++i)
    if (clusters[i] < 0 || static_cast<size_t>(clusters[i]) >= p.k)
      return Status::Invalid("cluster id " + std::to_string(clusters[i]) + " at index " + std::to_string(i) +
                             " is outside [0, " + std::to_string(p.k) + ")");
  Status st = check_cells(p, cells, n);
  if (!st.ok()) return st;
  return parallel_for(n, threads, 4096, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i)
      choice[i] = score_hard(p, clusters[i], allowed_row(p, i), gamma ? gamma + i * p.m : nullptr,
                             resid ? resid[i] : 0.0f, cells ? cells[i] : -1);
    return Status::Ok();
  });
}

Status score_batch_soft(const Pool& p, const float* Z, size_t n, int32_t* choice, float* gamma, int threads,
                        const float* resid, const int32_t* cells) {
  Status st = check_cells(p, cells, n);
  if (!st.ok()) return st;
  return parallel_for(n, threads, 1024, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i)
      choice[i] = score_soft(p, Z + i * p.k, allowed_row(p, i), gamma ? gamma + i * p.m : nullptr,
                             resid ? resid[i] : 0.0f, cells ? cells[i] : -1);
    return Status::Ok();
  });
}

Status argmin_batch(const Pool& p, const float* gamma, size_t n, int32_t* choice, int threads,
                    const int32_t* cells) {
  Status st = check_cells(p, cells, n);
  if (!st.ok()) return st;
  return parallel_for(n, threads, 8192, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) choice[i] = argmin_scores(p, gamma + i * p.m, allowed_row(p, i), cells ? cells[i] : -1);
    return Status::Ok();
  });
}

}  // namespace uniroute
