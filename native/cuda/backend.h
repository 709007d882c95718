// The CUDA backend's interface, in plain C++ (no CUDA types): the binding includes it whether or not CUDA was
// compiled in. Without nvcc at build time, stub.cpp implements it and reports why. Every function returns a
// Status; CUDA errors (no driver, no device, out of memory) become statuses, never aborts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/common.h"
#include "../core/embed.h"
#include "../core/route.h"
#include "../core/score.h"

namespace uniroute {
namespace cuda {

struct DeviceInfo {
  bool compiled = false;   // CUDA code is in this build
  bool available = false;  // a usable device was found
  std::string reason;      // why not, when not available
  std::string name;        // device name
  int compute_major = 0, compute_minor = 0;
  size_t memory_bytes = 0;
  int runtime_version = 0, driver_version = 0;
};

// Probes once (cached); safe to call on a machine with no driver.
const DeviceInfo& probe();

// Embeds texts: features hashed on CPU threads, projection and normalisation on the GPU. out: n x dim.
Status embed_batch(const Projection& p, const TextRef* texts, size_t n, float* out, int threads);

// Nearest centroid for n points (n x d) against k centroids, on the GPU.
Status assign_nearest(const float* X, size_t n, size_t d, const float* C, size_t k, int32_t* idx, float* dist);

// Scores hard cluster ids against the pool, on the GPU.
Status score_batch_hard(const Pool& p, const int32_t* clusters, size_t n, int32_t* choice, float* gamma);

// The fused route: hashing on CPU threads; projection, normalisation, nearest centroid and scoring on the GPU,
// streamed in chunks through pinned host memory with copies overlapped with compute.
Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads);

// Releases device memory held in caches (the projection tables).
void release();

}  // namespace cuda
}  // namespace uniroute
