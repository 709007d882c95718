// Built when the CUDA backend was not compiled (no nvcc, or no GPU and no UNIROUTE_CUDA_ARCHS: CMakeLists.txt): it
// reports itself as not compiled in.
#include "backend.h"

namespace uniroute {
namespace cuda {

const DeviceInfo& probe() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    d.compiled = false;
    d.available = false;
    d.reason = "this build has no CUDA code (no nvcc, or no GPU and no UNIROUTE_CUDA_ARCHS, when the addon was compiled; see the README, Backends)";
    return d;
  }();
  return info;
}

static Status unavailable() { return Status::Invalid("the CUDA backend is unavailable: " + probe().reason); }

Status embed_batch(const Projection&, const TextRef*, size_t, float*, int) { return unavailable(); }
Status assign_nearest(const float*, size_t, size_t, const float*, size_t, int32_t*, float*) { return unavailable(); }
Status score_batch_hard(const Pool&, const int32_t*, size_t, int32_t*, float*) { return unavailable(); }
Status route_batch(const Projection&, const TextRef*, size_t, const float*, const Pool&, const RouteOutputs&, int) {
  return unavailable();
}
void release() {}

}  // namespace cuda
}  // namespace uniroute
