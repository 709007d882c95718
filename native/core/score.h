// Scoring: predicted error gamma_m(x) = z(x) . Psi_m, score = gamma + lambda * c_m, route = argmin over allowed m.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"

namespace uniroute {

struct Pool {
  size_t m = 0;                 // LLMs
  size_t k = 0;                 // clusters
  const float* psi = nullptr;   // m x k error vectors
  const float* cost = nullptr;  // m costs per query
  float lambda = 0.0f;
  const uint8_t* allowed = nullptr;  // null (all), m (shared) or n x m (per prompt) flags
  bool allowed_per_row = false;
};

// Ties: lower score, then lower cost, then lower index. Returns -1 when no LLM is allowed.
// gamma (m floats) receives every LLM's predicted error when not null.
int32_t score_hard(const Pool& p, int32_t cluster, const uint8_t* allowed_row, float* gamma);
int32_t score_soft(const Pool& p, const float* z, const uint8_t* allowed_row, float* gamma);

// clusters: n ids in [0, k). choice: n out. gamma: n x m out or null.
Status score_batch_hard(const Pool& p, const int32_t* clusters, size_t n, int32_t* choice, float* gamma, int threads);
// Z: n x k membership weights (rows of the learned map; each row sums to 1).
Status score_batch_soft(const Pool& p, const float* Z, size_t n, int32_t* choice, float* gamma, int threads);

inline const uint8_t* allowed_row(const Pool& p, size_t i) {
  if (!p.allowed) return nullptr;
  return p.allowed_per_row ? p.allowed + i * p.m : p.allowed;
}

}  // namespace uniroute
