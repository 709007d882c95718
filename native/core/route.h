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
};

// centroids: k x dim (dim = p.cfg.dim); pool.k must equal k.
Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads);

}  // namespace uniroute
