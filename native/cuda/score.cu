// Scoring on the GPU: one warp per prompt takes the argmin over the pool.
#include <algorithm>

#include "common.cuh"

namespace uniroute {
namespace cuda {

__global__ void score_kernel(const int32_t* clusters, int n, const float* psi, const float* cost, int M, int K,
                             float lambda, const uint8_t* allowed, int per_row, int32_t* choice, float* gamma) {
  const int i = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (i >= n) return;
  const uint8_t* al = allowed ? allowed + (per_row ? static_cast<size_t>(i) * M : 0) : nullptr;
  const int j = warp_score(psi, cost, M, K, clusters[i], lambda, al, gamma ? gamma + static_cast<size_t>(i) * M : nullptr);
  if ((threadIdx.x & 31) == 0) choice[i] = j;
}

Status score_batch_hard(const Pool& p, const int32_t* clusters, size_t n, int32_t* choice, float* gamma) {
  if (!probe().available) return Status::Invalid("the CUDA backend is unavailable: " + probe().reason);
  for (size_t i = 0; i < n; ++i)
    if (clusters[i] < 0 || static_cast<size_t>(clusters[i]) >= p.k)
      return Status::Invalid("cluster id " + std::to_string(clusters[i]) + " at index " + std::to_string(i) + " is outside [0, " + std::to_string(p.k) + ")");
  if (n == 0) return Status::Ok();
  DeviceState& g = state();
  constexpr size_t kRows = 1 << 16;  // bounded device memory: chunks of rows
  const size_t rows = std::min(n, kRows);
  const size_t al_n = p.allowed ? (p.allowed_per_row ? rows * p.m : p.m) : 0;
  Status s;
  if (!(s = g.clusters.reserve(rows)).ok() || !(s = g.choice.reserve(rows)).ok() || !(s = g.psi.reserve(p.m * p.k)).ok() ||
      !(s = g.cost.reserve(p.m)).ok() || !(s = g.gamma.reserve(gamma ? rows * p.m : 1)).ok() || !(s = g.mask.reserve(al_n + 1)).ok())
    return s;
  UR_CUDA(cudaMemcpy(g.psi.get(), p.psi, p.m * p.k * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.cost.get(), p.cost, p.m * sizeof(float), cudaMemcpyHostToDevice));
  if (p.allowed && !p.allowed_per_row) UR_CUDA(cudaMemcpy(g.mask.get(), p.allowed, p.m, cudaMemcpyHostToDevice));
  for (size_t b = 0; b < n; b += kRows) {
    const size_t cnt = std::min(n - b, kRows);
    UR_CUDA(cudaMemcpy(g.clusters.get(), clusters + b, cnt * sizeof(int32_t), cudaMemcpyHostToDevice));
    if (p.allowed && p.allowed_per_row) UR_CUDA(cudaMemcpy(g.mask.get(), p.allowed + b * p.m, cnt * p.m, cudaMemcpyHostToDevice));
    const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
    score_kernel<<<blocks, 32 * kWarpsPerBlock>>>(g.clusters.get(), static_cast<int>(cnt), g.psi.get(), g.cost.get(), static_cast<int>(p.m),
                                                   static_cast<int>(p.k), p.lambda, p.allowed ? g.mask.get() : nullptr,
                                                   p.allowed_per_row ? 1 : 0, g.choice.get(), gamma ? g.gamma.get() : nullptr);
    UR_CUDA(cudaGetLastError());
    UR_CUDA(cudaMemcpy(choice + b, g.choice.get(), cnt * sizeof(int32_t), cudaMemcpyDeviceToHost));
    if (gamma) UR_CUDA(cudaMemcpy(gamma + b * p.m, g.gamma.get(), cnt * p.m * sizeof(float), cudaMemcpyDeviceToHost));
  }
  return Status::Ok();
}

}  // namespace cuda
}  // namespace uniroute
