// The fused route on the GPU. Prompts stream through in chunks: while the GPU works on one chunk (copy in,
// kernel, copy out on its own stream), CPU threads hash the next into the other slot's pinned buffers.
// Device memory is bounded by the chunk size; the slots, streams and buffers are the calling thread's, kept and
// reused across calls (native/cuda/common.cuh: DeviceState).
#include <algorithm>
#include <cstring>

#include "../core/assign.h"
#include "common.cuh"

namespace uniroute {
namespace cuda {

__global__ void route_kernel(const uint32_t* row_ptr, const uint32_t* bucket, const float* weight, int n, const int8_t* q,
                             const float* scale, int D, const float* C, const float* cnorm, int K, const float* psi,
                             const float* cost, int M, float lambda, const uint8_t* allowed, int per_row, int32_t* choice,
                             int32_t* cluster, float* dist, float* gamma) {
  const int i = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (i >= n) return;
  float acc[kMaxDimsPerLane];
  warp_embed(bucket, weight, row_ptr[i], row_ptr[i + 1], q, scale, D, acc);
  int c;
  float d2;
  warp_nearest(acc, D, C, cnorm, K, &c, &d2);
  const uint8_t* al = allowed ? allowed + (per_row ? static_cast<size_t>(i) * M : 0) : nullptr;
  const int j = warp_score(psi, cost, M, K, c, lambda, al, gamma ? gamma + static_cast<size_t>(i) * M : nullptr);
  if ((threadIdx.x & 31) == 0) {
    choice[i] = j;
    cluster[i] = c;
    dist[i] = sqrtf(fmaxf(0.0f, d2));
  }
}

namespace {
constexpr size_t kChunk = 1 << 15;
}  // namespace

Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads) {
  if (!probe().available) return Status::Invalid("the CUDA backend is unavailable: " + probe().reason);
  const int D = static_cast<int>(proj.cfg.dim);
  if (D > 32 * kMaxDimsPerLane) return Status::Invalid("the CUDA backend supports embedding dimensions up to 512");
  if (pool.k == 0) return Status::Invalid("the router has no clusters");
  if (n == 0) return Status::Ok();
  DeviceState& g = state();
  const int8_t* q;
  const float* scale;
  Status st = upload_projection(proj, &q, &scale);
  if (!st.ok()) return st;
  const size_t K = pool.k, M = pool.m;
  const std::vector<float> cn = centroid_norms(centroids, K, static_cast<size_t>(D));
  Status s;
  if (!(s = g.centroids.reserve(K * D)).ok() || !(s = g.norms.reserve(K)).ok() || !(s = g.psi.reserve(M * K)).ok() ||
      !(s = g.cost.reserve(M)).ok() || !(s = g.mask.reserve(M)).ok())
    return s;
  UR_CUDA(cudaMemcpy(g.centroids.get(), centroids, K * D * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.norms.get(), cn.data(), K * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.psi.get(), pool.psi, M * K * sizeof(float), cudaMemcpyHostToDevice));
  UR_CUDA(cudaMemcpy(g.cost.get(), pool.cost, M * sizeof(float), cudaMemcpyHostToDevice));
  const bool shared_mask = pool.allowed && !pool.allowed_per_row;
  const bool per_row = pool.allowed && pool.allowed_per_row;
  if (shared_mask) UR_CUDA(cudaMemcpy(g.mask.get(), pool.allowed, M, cudaMemcpyHostToDevice));
  return pipeline(
      g.slots, n, kChunk,
      [&](Slot& sl, size_t b, size_t e) -> Status {
        const size_t cnt = e - b;
        Status r;
        // hashing on CPU threads overlaps the other slot's GPU work
        if (!(r = stage_hashed(sl, proj, texts, b, e, threads)).ok()) return r;
        if (!(r = sl.h_choice.reserve(cnt)).ok() || !(r = sl.h_cluster.reserve(cnt)).ok() || !(r = sl.h_dist.reserve(cnt)).ok() ||
            !(r = sl.h_gamma.reserve(out.gamma ? cnt * M : 1)).ok() || !(r = sl.h_allowed.reserve(per_row ? cnt * M : 1)).ok() ||
            !(r = sl.d_choice.reserve(cnt)).ok() || !(r = sl.d_cluster.reserve(cnt)).ok() || !(r = sl.d_dist.reserve(cnt)).ok() ||
            !(r = sl.d_gamma.reserve(out.gamma ? cnt * M : 1)).ok() || !(r = sl.d_allowed.reserve(per_row ? cnt * M : 1)).ok())
          return r;
        cudaStream_t str = sl.stream.get();
        if (per_row) {
          std::memcpy(sl.h_allowed.get(), pool.allowed + b * M, cnt * M);
          UR_CUDA(cudaMemcpyAsync(sl.d_allowed.get(), sl.h_allowed.get(), cnt * M, cudaMemcpyHostToDevice, str));
        }
        const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
        route_kernel<<<blocks, 32 * kWarpsPerBlock, 0, str>>>(
            sl.d_rows.get(), sl.d_bucket.get(), sl.d_weight.get(), static_cast<int>(cnt), q, scale, D, g.centroids.get(), g.norms.get(),
            static_cast<int>(K), g.psi.get(), g.cost.get(), static_cast<int>(M), pool.lambda,
            per_row ? sl.d_allowed.get() : (shared_mask ? g.mask.get() : nullptr), per_row ? 1 : 0, sl.d_choice.get(),
            sl.d_cluster.get(), sl.d_dist.get(), out.gamma ? sl.d_gamma.get() : nullptr);
        UR_CUDA(cudaGetLastError());
        UR_CUDA(cudaMemcpyAsync(sl.h_choice.get(), sl.d_choice.get(), cnt * sizeof(int32_t), cudaMemcpyDeviceToHost, str));
        UR_CUDA(cudaMemcpyAsync(sl.h_cluster.get(), sl.d_cluster.get(), cnt * sizeof(int32_t), cudaMemcpyDeviceToHost, str));
        UR_CUDA(cudaMemcpyAsync(sl.h_dist.get(), sl.d_dist.get(), cnt * sizeof(float), cudaMemcpyDeviceToHost, str));
        if (out.gamma) UR_CUDA(cudaMemcpyAsync(sl.h_gamma.get(), sl.d_gamma.get(), cnt * M * sizeof(float), cudaMemcpyDeviceToHost, str));
        return Status::Ok();
      },
      [&](Slot& sl) -> Status {
        std::memcpy(out.choice + sl.begin, sl.h_choice.get(), sl.count * sizeof(int32_t));
        std::memcpy(out.cluster + sl.begin, sl.h_cluster.get(), sl.count * sizeof(int32_t));
        if (out.distance) std::memcpy(out.distance + sl.begin, sl.h_dist.get(), sl.count * sizeof(float));
        if (out.gamma) std::memcpy(out.gamma + sl.begin * M, sl.h_gamma.get(), sl.count * M * sizeof(float));
        return Status::Ok();
      });
}

}  // namespace cuda
}  // namespace uniroute
