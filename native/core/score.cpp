#include "score.h"

#include "assign.h"
#include "isa.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace uniroute {

namespace {
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

Scorer::Scorer(const Pool& p)
    : p_(p), lc_(p.m), cost_(p.m), lcf_((p.m + kScorePad - 1) / kScorePad * kScorePad, std::numeric_limits<float>::infinity()),
      err_(lcf_.size(), 0.0f), kt_(&kernels()) {
  // the score in double: at a large lambda, float would round the predicted errors away (lambda * cost ~ 1e8);
  // the kernel's float pass only narrows the candidates (kernels.inc, argmin_scores)
  for (size_t j = 0; j < p.m; ++j) {
    cost_[j] = static_cast<double>(p.cost[j]);
    lc_[j] = static_cast<double>(p.lambda) * cost_[j];
    lcf_[j] = static_cast<float>(lc_[j]);
    const bool tame = std::isfinite(lc_[j]) && std::fabs(lc_[j]) < 1e30;  // else: always a candidate
    err_[j] = tame ? std::fabs(lcf_[j]) * (1.0f / 1048576.0f) + 1e-37f : std::numeric_limits<float>::infinity();
    if (!tame) lcf_[j] = 0.0f;
  }
  float lmax = 0.0f;
  bool tame = true;
  for (size_t j = 0; j < p.m; ++j) {
    lmax = std::max(lmax, std::fabs(lcf_[j]));
    tame &= std::isfinite(err_[j]);
  }
  const float gap = tame ? lmax * (1.0f / 262144.0f) + 4e-37f : std::numeric_limits<float>::infinity();
  terms_ = {lc_.data(), cost_.data(), lcf_.data(), err_.data(), p.m, gap};
}

// Evidence first: among the LLMs with evidence in the prompt's cell, else among all the allowed ones.
int32_t Scorer::argmin(const float* g, const uint8_t* allowed, int32_t cell) const {
  if (p_.evidence && cell >= 0) {
    const int32_t b = kt_->argmin_scores(g, terms_, allowed, p_.evidence + static_cast<size_t>(cell), p_.evidence_stride());
    if (b >= 0) return b;
  }
  return kt_->argmin_scores(g, terms_, allowed, nullptr, 0);
}

int32_t Scorer::hard(int32_t cluster, const uint8_t* allowed, float* gamma, float r, int32_t cell) const {
  const Pool& p = p_;
  GammaRow row(p.m, gamma);
  float* g = row.g;
  const size_t c = static_cast<size_t>(cluster);
  if (p.psi_logit) {
    const float shift = p.slope * r;
    for (size_t j = 0; j < p.m; ++j) g[j] = sigmoidf(p.psi_logit[j * p.k + c] + shift);
  } else {
    for (size_t j = 0; j < p.m; ++j) g[j] = p.psi[j * p.k + c];
  }
  return argmin(g, allowed, cell >= 0 ? cell : (p.ke ? -1 : cluster));
}

int32_t Scorer::soft_from_dots(float* g, const uint8_t* allowed, float r, int32_t cell) const {
  if (p_.psi_logit) {
    const float shift = p_.slope * r;
    for (size_t j = 0; j < p_.m; ++j) {
      const float q = clamp01(g[j]);
      g[j] = sigmoidf(std::log(q / (1.0f - q)) + shift);
    }
  }
  return argmin(g, allowed, cell);
}

int32_t Scorer::soft(const float* z, const uint8_t* allowed, float* gamma, float r, int32_t cell) const {
  const Pool& p = p_;
  GammaRow row(p.m, gamma);
  float* g = row.g;
  for (size_t j = 0; j < p.m; ++j) {
    const float* psi = p.psi + j * p.k;
    float s = 0.0f;
    for (size_t c = 0; c < p.k; ++c) s += z[c] * psi[c];
    g[j] = s;
  }
  return soft_from_dots(g, allowed, r, cell);
}

int32_t score_hard(const Pool& p, int32_t cluster, const uint8_t* allowed, float* gamma, float r, int32_t cell) {
  return Scorer(p).hard(cluster, allowed, gamma, r, cell);
}

int32_t score_soft(const Pool& p, const float* z, const uint8_t* allowed, float* gamma, float r, int32_t cell) {
  return Scorer(p).soft(z, allowed, gamma, r, cell);
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
  const Scorer sc(p);
  if (!p.allowed_per_row && !p.psi_logit && !cells) {
    // a prompt's decision depends on its cluster alone: decide each cluster once, then look it up
    std::vector<int32_t> table(p.k);
    std::vector<float> g(p.k * p.m);
    for (size_t c = 0; c < p.k; ++c) table[c] = sc.hard(static_cast<int32_t>(c), p.allowed, g.data() + c * p.m);
    return parallel_for(n, threads, 4096, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; ++i) {
        const size_t c = static_cast<size_t>(clusters[i]);
        choice[i] = table[c];
        if (gamma) std::copy(g.begin() + c * p.m, g.begin() + (c + 1) * p.m, gamma + i * p.m);
      }
      return Status::Ok();
    });
  }
  return parallel_for(n, threads, 4096, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i)
      choice[i] = sc.hard(clusters[i], allowed_row(p, i), gamma ? gamma + i * p.m : nullptr, resid ? resid[i] : 0.0f,
                          cells ? cells[i] : -1);
    return Status::Ok();
  });
}

Status score_batch_soft(const Pool& p, const float* Z, size_t n, int32_t* choice, float* gamma, int threads,
                        const float* resid, const int32_t* cells) {
  Status st = check_cells(p, cells, n);
  if (!st.ok()) return st;
  if (p.m == 0) {
    for (size_t i = 0; i < n; ++i) choice[i] = -1;
    return Status::Ok();
  }
  // gamma = Z psi^T through the blocked kernel (psi packed as m "centroids" of k values), a chunk of rows at a
  // time (in L1), into the caller's gamma or a scratch chunk; then per row the difficulty shift and the argmin.
  // Without an allowed set, evidence or a difficulty slope, the argmin is fused with the dot products.
  const Scorer sc(p);
  const PackedCentroids P = pack_centroids(p.psi, p.m, p.k);
  const bool fused = !p.allowed && !(p.evidence && cells) && !p.psi_logit;
  // scores larger than the caches (the caller reads them after the batch) are computed a chunk at a time in cache and
  // streamed out a tile at a time as each tile's argmins are done, without reading the lines they overwrite; smaller
  // ones are written in place
  const bool stream = fused && gamma && n * p.m * sizeof(float) >= (size_t{8} << 20);
  return parallel_for(n, threads, 1024, [&](size_t b, size_t e, int) {
    constexpr size_t kChunk = 64;
    std::vector<float> scratch(gamma && !stream ? 0 : kChunk * p.m);
    for (size_t c0 = b; c0 < e; c0 += kChunk) {
      const size_t c1 = std::min(e, c0 + kChunk);
      float* G = gamma && !stream ? gamma + c0 * p.m : scratch.data();
      if (fused) {
        P.kt->score_soft_rows(P.view(), Z, c0, c1, G, sc.terms(), choice, stream ? gamma : nullptr);
        continue;
      }
      dot_rows(P, Z, c0, c1, G, p.m);
      for (size_t i = c0; i < c1; ++i)
        choice[i] = sc.soft_from_dots(G + (i - c0) * p.m, allowed_row(p, i), resid ? resid[i] : 0.0f, cells ? cells[i] : -1);
    }
    return Status::Ok();
  });
}

Status argmin_batch(const Pool& p, const float* gamma, size_t n, int32_t* choice, int threads,
                    const int32_t* cells) {
  Status st = check_cells(p, cells, n);
  if (!st.ok()) return st;
  const Scorer sc(p);
  return parallel_for(n, threads, 8192, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) choice[i] = sc.argmin(gamma + i * p.m, allowed_row(p, i), cells ? cells[i] : -1);
    return Status::Ok();
  });
}

}  // namespace uniroute
