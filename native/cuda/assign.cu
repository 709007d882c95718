// Nearest centroid on the GPU: one warp per point.
#include <algorithm>
#include <cstring>

#include "../core/assign.h"
#include "common.cuh"

namespace uniroute {
namespace cuda {

__global__ void assign_kernel(const float* X, int n, int D, const float* C, const float* cnorm, int K, int32_t* idx,
                              float* dist) {
  const int i = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (i >= n) return;
  const int lane = threadIdx.x & 31;
  float acc[kMaxDimsPerLane];
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    acc[j] = d < D ? X[static_cast<size_t>(i) * D + d] : 0.0f;
  }
  int k;
  float d2;
  warp_nearest(acc, D, C, cnorm, K, &k, &d2);
  if (lane == 0) {
    idx[i] = k;
    if (dist) dist[i] = sqrtf(fmaxf(0.0f, d2));
  }
}

Status assign_nearest(const float* X, size_t n, size_t d, const float* C, size_t k, int32_t* idx, float* dist) {
  if (!probe().available) return Status::Invalid("the CUDA backend is unavailable: " + probe().reason);
  if (d > static_cast<size_t>(32 * kMaxDimsPerLane)) return Status::Invalid("the CUDA backend supports dimensions up to 512");
  if (k == 0) return Status::Invalid("there must be at least one centroid");
  if (n == 0) return Status::Ok();
  DeviceState& g = state();
  const std::vector<float> cn = centroid_norms(C, k, d);
  Status s;
  if (!(s = g.centroids.reserve(k * d)).ok() || !(s = g.norms.reserve(k)).ok()) return s;
  UR_CUDA(cudaMemcpy(g.centroids.get(), C, k * d * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.norms.get(), cn.data(), k * sizeof(float), cudaMemcpyHostToDevice));
  constexpr size_t kRows = 1 << 16;  // bounded device memory: chunks of rows, two in flight
  return pipeline(
      g.aux, n, kRows,
      [&](Slot& sl, size_t b, size_t e) -> Status {
        const size_t cnt = e - b;
        Status r;
        if (!(r = sl.h_x.reserve(cnt * d)).ok() || !(r = sl.d_x.reserve(cnt * d)).ok() || !(r = sl.h_cluster.reserve(cnt)).ok() ||
            !(r = sl.d_cluster.reserve(cnt)).ok() || !(r = sl.h_dist.reserve(cnt)).ok() || !(r = sl.d_dist.reserve(cnt)).ok())
          return r;
        std::memcpy(sl.h_x.get(), X + b * d, cnt * d * sizeof(float));
        cudaStream_t str = sl.stream.get();
        UR_CUDA(cudaMemcpyAsync(sl.d_x.get(), sl.h_x.get(), cnt * d * sizeof(float), cudaMemcpyHostToDevice, str));
        const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
        assign_kernel<<<blocks, 32 * kWarpsPerBlock, 0, str>>>(sl.d_x.get(), static_cast<int>(cnt), static_cast<int>(d), g.centroids.get(),
                                                                g.norms.get(), static_cast<int>(k), sl.d_cluster.get(), sl.d_dist.get());
        UR_CUDA(cudaGetLastError());
        UR_CUDA(cudaMemcpyAsync(sl.h_cluster.get(), sl.d_cluster.get(), cnt * sizeof(int32_t), cudaMemcpyDeviceToHost, str));
        UR_CUDA(cudaMemcpyAsync(sl.h_dist.get(), sl.d_dist.get(), cnt * sizeof(float), cudaMemcpyDeviceToHost, str));
        return Status::Ok();
      },
      [&](Slot& sl) -> Status {
        std::memcpy(idx + sl.begin, sl.h_cluster.get(), sl.count * sizeof(int32_t));
        if (dist) std::memcpy(dist + sl.begin, sl.h_dist.get(), sl.count * sizeof(float));
        return Status::Ok();
      });
}

}  // namespace cuda
}  // namespace uniroute
