// Scoring on the GPU: one warp per prompt takes the argmin over the pool.
#include <algorithm>
#include <cstring>

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
  constexpr size_t kRows = 1 << 16;  // bounded device memory: chunks of rows, two in flight
  const size_t M = p.m, K = p.k;
  const bool per_row = p.allowed && p.allowed_per_row;
  Status s;
  if (!(s = g.psi.reserve(M * K)).ok() || !(s = g.cost.reserve(M)).ok() || !(s = g.mask.reserve(M)).ok()) return s;
  UR_CUDA(cudaMemcpy(g.psi.get(), p.psi, M * K * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.cost.get(), p.cost, M * sizeof(float), cudaMemcpyHostToDevice));
  if (p.allowed && !per_row) UR_CUDA(cudaMemcpy(g.mask.get(), p.allowed, M, cudaMemcpyHostToDevice));
  return pipeline(
      g.aux, n, kRows,
      [&](Slot& sl, size_t b, size_t e) -> Status {
        const size_t cnt = e - b;
        Status r;
        if (!(r = sl.h_in.reserve(cnt)).ok() || !(r = sl.d_in.reserve(cnt)).ok() || !(r = sl.h_choice.reserve(cnt)).ok() ||
            !(r = sl.d_choice.reserve(cnt)).ok() || !(r = sl.h_gamma.reserve(gamma ? cnt * M : 1)).ok() ||
            !(r = sl.d_gamma.reserve(gamma ? cnt * M : 1)).ok() || !(r = sl.h_allowed.reserve(per_row ? cnt * M : 1)).ok() ||
            !(r = sl.d_allowed.reserve(per_row ? cnt * M : 1)).ok())
          return r;
        cudaStream_t str = sl.stream.get();
        std::memcpy(sl.h_in.get(), clusters + b, cnt * sizeof(int32_t));
        UR_CUDA(cudaMemcpyAsync(sl.d_in.get(), sl.h_in.get(), cnt * sizeof(int32_t), cudaMemcpyHostToDevice, str));
        if (per_row) {
          std::memcpy(sl.h_allowed.get(), p.allowed + b * M, cnt * M);
          UR_CUDA(cudaMemcpyAsync(sl.d_allowed.get(), sl.h_allowed.get(), cnt * M, cudaMemcpyHostToDevice, str));
        }
        const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
        score_kernel<<<blocks, 32 * kWarpsPerBlock, 0, str>>>(sl.d_in.get(), static_cast<int>(cnt), g.psi.get(), g.cost.get(), static_cast<int>(M),
                                                               static_cast<int>(K), p.lambda,
                                                               per_row ? sl.d_allowed.get() : (p.allowed ? g.mask.get() : nullptr),
                                                               per_row ? 1 : 0, sl.d_choice.get(), gamma ? sl.d_gamma.get() : nullptr);
        UR_CUDA(cudaGetLastError());
        UR_CUDA(cudaMemcpyAsync(sl.h_choice.get(), sl.d_choice.get(), cnt * sizeof(int32_t), cudaMemcpyDeviceToHost, str));
        if (gamma) UR_CUDA(cudaMemcpyAsync(sl.h_gamma.get(), sl.d_gamma.get(), cnt * M * sizeof(float), cudaMemcpyDeviceToHost, str));
        return Status::Ok();
      },
      [&](Slot& sl) -> Status {
        std::memcpy(choice + sl.begin, sl.h_choice.get(), sl.count * sizeof(int32_t));
        if (gamma) std::memcpy(gamma + sl.begin * M, sl.h_gamma.get(), sl.count * M * sizeof(float));
        return Status::Ok();
      });
}

}  // namespace cuda
}  // namespace uniroute
