// The fused routing kernel: text -> embedding -> nearest centroid -> scores -> argmin, per prompt, in parallel.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.h"
#include "embed.h"
#include "score.h"

namespace uniroute {

struct RouteOutputs {
  int32_t* choice = nullptr;   // n
  int32_t* cluster = nullptr;  // n
  float* distance = nullptr;   // n
  float* gamma = nullptr;      // n x m, optional
  int32_t* cell = nullptr;     // n, optional: the evidence cell (with EvidenceCells)
  float* chosen = nullptr;     // n, optional: the chosen LLM's predicted error (without the n x m gamma)
};

// The prompt-difficulty model: d(x) = w . phi(x) + w0, r = d - mu[cluster] (used with Pool::psi_logit).
struct Difficulty {
  const float* w = nullptr;   // dim
  float w0 = 0.0f;
  const float* mu = nullptr;  // k
};

// The evidence cells: ke x dim centroids of a finer partition (used with Pool::evidence when Pool::ke > 0), nested
// in the clusters: cluster c holds the cells start[c] ... start[c + 1] - 1 (k + 1 offsets, rising, start[k] = ke).
struct EvidenceCells {
  const float* centroids = nullptr;
  size_t ke = 0;
  const int32_t* start = nullptr;
  const float* norms = nullptr;  // ke squared norms of the centroids (optional: computed per call when absent)
};

// centroids: k x dim (dim = p.cfg.dim); pool.k must equal k. diff: null, or the difficulty model when
// pool.psi_logit is set. cells: null, or the evidence cells when pool.ke > 0.
Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads, const Difficulty* diff = nullptr,
                   const EvidenceCells* cells = nullptr, const float* centroid_norms = nullptr);

struct MlpConfig;

// Decisions for rows of embeddings already in memory (precomputed, or a learned map's input): nearest centroid,
// the learned map's membership when `map` is set (soft scores), difficulty, evidence cell, argmin. Runs in chunks
// of `chunk` rows, so memory beyond the outputs stays bounded whatever n is.
struct VectorRoute {
  const float* X = nullptr;  // n x dim
  size_t n = 0, dim = 0;
  const float* centroids = nullptr;  // k x dim
  const MlpConfig* map = nullptr;
  const float* map_params = nullptr;
  const Difficulty* diff = nullptr;
  const EvidenceCells* cells = nullptr;
  size_t chunk = 8192;
  const float* centroid_norms = nullptr;  // k squared norms (optional: computed per call when absent)
};
Status route_vectors(const VectorRoute& a, const Pool& pool, const RouteOutputs& out, int threads);

}  // namespace uniroute
