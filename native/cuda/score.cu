// Scoring on the GPU: one warp per prompt takes the argmin over the pool.
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
  std::lock_guard<std::mutex> lock(context().mu);
  const size_t al_n = p.allowed ? (p.allowed_per_row ? n * p.m : p.m) : 0;
  DeviceBuffer<int32_t> dCl, dCh;
  DeviceBuffer<float> dPsi, dCost, dG;
  DeviceBuffer<uint8_t> dAl;
  auto run = [&]() -> Status {
    Status s;
    if (!(s = dCl.reserve(n)).ok() || !(s = dCh.reserve(n)).ok() || !(s = dPsi.reserve(p.m * p.k)).ok() ||
        !(s = dCost.reserve(p.m)).ok() || !(s = dG.reserve(gamma ? n * p.m : 1)).ok() || !(s = dAl.reserve(al_n + 1)).ok())
      return s;
    UR_CUDA(cudaMemcpy(dCl.ptr, clusters, n * sizeof(int32_t), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(dPsi.ptr, p.psi, p.m * p.k * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(dCost.ptr, p.cost, p.m * sizeof(float), cudaMemcpyHostToDevice));
    if (al_n) UR_CUDA(cudaMemcpy(dAl.ptr, p.allowed, al_n, cudaMemcpyHostToDevice));
    const int blocks = static_cast<int>((n + kWarpsPerBlock - 1) / kWarpsPerBlock);
    score_kernel<<<blocks, 32 * kWarpsPerBlock>>>(dCl.ptr, static_cast<int>(n), dPsi.ptr, dCost.ptr, static_cast<int>(p.m),
                                                   static_cast<int>(p.k), p.lambda, al_n ? dAl.ptr : nullptr,
                                                   p.allowed_per_row ? 1 : 0, dCh.ptr, gamma ? dG.ptr : nullptr);
    UR_CUDA(cudaGetLastError());
    UR_CUDA(cudaMemcpy(choice, dCh.ptr, n * sizeof(int32_t), cudaMemcpyDeviceToHost));
    if (gamma) UR_CUDA(cudaMemcpy(gamma, dG.ptr, n * p.m * sizeof(float), cudaMemcpyDeviceToHost));
    return Status::Ok();
  };
  Status st = run();
  dCl.free();
  dCh.free();
  dPsi.free();
  dCost.free();
  dG.free();
  dAl.free();
  return st;
}

}  // namespace cuda
}  // namespace uniroute
