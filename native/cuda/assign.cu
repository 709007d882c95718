// Nearest centroid on the GPU: one warp per point.
#include <algorithm>

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
  constexpr size_t kRows = 1 << 16;  // bounded device memory: chunks of rows
  const size_t rows = std::min(n, kRows);
  if (!(s = g.X.reserve(rows * d)).ok() || !(s = g.centroids.reserve(k * d)).ok() || !(s = g.norms.reserve(k)).ok() ||
      !(s = g.dist.reserve(rows)).ok() || !(s = g.idx.reserve(rows)).ok())
    return s;
  UR_CUDA(cudaMemcpy(g.centroids.get(), C, k * d * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.norms.get(), cn.data(), k * sizeof(float), cudaMemcpyHostToDevice));
  for (size_t b = 0; b < n; b += kRows) {
    const size_t cnt = std::min(n - b, kRows);
    UR_CUDA(cudaMemcpy(g.X.get(), X + b * d, cnt * d * sizeof(float), cudaMemcpyHostToDevice));
    const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
    assign_kernel<<<blocks, 32 * kWarpsPerBlock>>>(g.X.get(), static_cast<int>(cnt), static_cast<int>(d), g.centroids.get(),
                                                   g.norms.get(), static_cast<int>(k), g.idx.get(), g.dist.get());
    UR_CUDA(cudaGetLastError());
    UR_CUDA(cudaMemcpy(idx + b, g.idx.get(), cnt * sizeof(int32_t), cudaMemcpyDeviceToHost));
    if (dist) UR_CUDA(cudaMemcpy(dist + b, g.dist.get(), cnt * sizeof(float), cudaMemcpyDeviceToHost));
  }
  return Status::Ok();
}

}  // namespace cuda
}  // namespace uniroute
