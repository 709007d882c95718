// Scoring: predicted error gamma_m(x) = z(x) . Psi_m, score = gamma + lambda * c_m, route = argmin over allowed m.
#pragma once
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace uniroute {

struct Pool {
  size_t m = 0;                 // LLMs
  size_t k = 0;                 // clusters
  const float* psi = nullptr;   // m x k error vectors
  const float* cost = nullptr;  // m costs per query
  float lambda = 0.0f;
  const uint8_t* allowed = nullptr;  // null (all), m (shared) or n x m (per prompt) flags
  bool allowed_per_row = false;
  // Prompt difficulty (optional): when psi_logit (m x k, logit of psi) is set, a prompt with within-cluster
  // difficulty r gets gamma = sigmoid(psi_logit + slope * r) under hard assignment.
  const float* psi_logit = nullptr;
  float slope = 0.0f;
  // Evidence (optional, m x ke flags over the evidence cells, a finer partition than the clusters; ke = 0 means
  // the clusters themselves): among the allowed LLMs, those with evidence in the prompt's cell are preferred; the
  // others compete only when none of the allowed LLMs has evidence there.
  const uint8_t* evidence = nullptr;
  size_t ke = 0;
  size_t evidence_stride() const { return ke ? ke : k; }
};

// The one argmin (every decision goes through it): the lowest score = gamma + lambda * cost among the allowed LLMs
// (those with evidence first, see Pool::evidence); ties go to the lower cost, then the lower index. Returns -1 when
// no LLM is allowed. gamma (m floats) receives every LLM's predicted error when not null.
// r: the prompt's within-cluster difficulty (used when p.psi_logit is set).
// cell: the prompt's evidence cell (-1: the cluster, when p.ke is 0).
int32_t score_hard(const Pool& p, int32_t cluster, const uint8_t* allowed_row, float* gamma, float r = 0.0f,
                   int32_t cell = -1);
// Soft: gamma_m = z . psi_m (then shifted by slope * r in logit space when p.psi_logit is set); evidence is read
// in `cell` when p.evidence is set.
int32_t score_soft(const Pool& p, const float* z, const uint8_t* allowed_row, float* gamma, float r = 0.0f,
                   int32_t cell = -1);

// The same rule for many prompts: lambda * cost in double and the kernels (isa.h) set up once per batch.
class Scorer {
 public:
  explicit Scorer(const Pool& p);
  Scorer(const Scorer&) = delete;  // terms_ points into its own vectors
  Scorer& operator=(const Scorer&) = delete;
  int32_t hard(int32_t cluster, const uint8_t* allowed_row, float* gamma, float r = 0.0f, int32_t cell = -1) const;
  int32_t soft(const float* z, const uint8_t* allowed_row, float* gamma, float r = 0.0f, int32_t cell = -1) const;
  // soft, where g (m) already holds z . psi_m (the blocked kernel's output): the difficulty shift, then the argmin
  int32_t soft_from_dots(float* g, const uint8_t* allowed_row, float r, int32_t cell) const;
  // evidence first (cell >= 0 with p.evidence), then the argmin
  int32_t argmin(const float* g, const uint8_t* allowed_row, int32_t cell) const;
  const ScoreTerms& terms() const { return terms_; }

 private:
  const Pool& p_;
  std::vector<double> lc_, cost_;  // lambda * cost_j and cost_j in double
  std::vector<float> lcf_, err_;   // the argmin kernel's float terms (kernels.h, ScoreTerms)
  ScoreTerms terms_;
  const KernelTable* kt_;
};

// clusters: n ids in [0, k). choice: n out. gamma: n x m out or null. resid, cells: n or null.
Status score_batch_hard(const Pool& p, const int32_t* clusters, size_t n, int32_t* choice, float* gamma, int threads,
                        const float* resid = nullptr, const int32_t* cells = nullptr);
// Z: n x k membership weights (rows of the learned map; each row sums to 1). cells (for evidence), resid: n or null.
Status score_batch_soft(const Pool& p, const float* Z, size_t n, int32_t* choice, float* gamma, int threads,
                        const float* resid = nullptr, const int32_t* cells = nullptr);

// The argmin alone, over predicted errors the caller already has (n x m): every baseline and calibration decision
// goes through the same rule as the router's. cells (n, for evidence) may be null.
Status argmin_batch(const Pool& p, const float* gamma, size_t n, int32_t* choice, int threads,
                    const int32_t* cells = nullptr);

inline float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline const uint8_t* allowed_row(const Pool& p, size_t i) {
  if (!p.allowed) return nullptr;
  return p.allowed_per_row ? p.allowed + i * p.m : p.allowed;
}

}  // namespace uniroute
