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
  Slot* slots = g.slots;
  // a slot's chunk is done: wait for its event, copy its outputs out of the pinned buffers
  auto finish = [&](Slot& s) -> Status {
    if (!s.busy) return Status::Ok();
    s.busy = false;
    UR_CUDA(cudaEventSynchronize(s.done.get()));
    std::memcpy(out.choice + s.begin, s.h_choice.get(), s.count * sizeof(int32_t));
    std::memcpy(out.cluster + s.begin, s.h_cluster.get(), s.count * sizeof(int32_t));
    if (out.distance) std::memcpy(out.distance + s.begin, s.h_dist.get(), s.count * sizeof(float));
    if (out.gamma) std::memcpy(out.gamma + s.begin * M, s.h_gamma.get(), s.count * M * sizeof(float));
    return Status::Ok();
  };
  auto run = [&]() -> Status {
    Status s;
    if (!(s = g.centroids.reserve(K * D)).ok() || !(s = g.norms.reserve(K)).ok() || !(s = g.psi.reserve(M * K)).ok() ||
        !(s = g.cost.reserve(M)).ok())
      return s;
    UR_CUDA(cudaMemcpy(g.centroids.get(), centroids, K * D * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(g.norms.get(), cn.data(), K * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(g.psi.get(), pool.psi, M * K * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(g.cost.get(), pool.cost, M * sizeof(float), cudaMemcpyHostToDevice));
    const bool shared_mask = pool.allowed && !pool.allowed_per_row;
    if (shared_mask) {
      if (!(s = g.mask.reserve(M)).ok()) return s;
      UR_CUDA(cudaMemcpy(g.mask.get(), pool.allowed, M, cudaMemcpyHostToDevice));
    }
    for (int i = 0; i < 2; ++i)
      if (!(s = slots[i].stream.ensure()).ok() || !(s = slots[i].done.ensure()).ok()) return s;
    size_t chunk_index = 0;
    for (size_t b = 0; b < n; b += kChunk, ++chunk_index) {
      Slot& sl = slots[chunk_index & 1];
      if (!(s = finish(sl)).ok()) return s;  // the slot's previous chunk is done: its outputs are copied out
      const size_t e = std::min(n, b + kChunk), cnt = e - b;
      // hashing on CPU threads overlaps the other slot's GPU work
      if (!(s = hash_chunk(proj, texts, b, e, threads, sl.rows, sl.bucket, sl.weight)).ok()) return s;
      const size_t nf = sl.bucket.size();
      const bool per_row = pool.allowed && pool.allowed_per_row;
      if (!(s = sl.h_rows.reserve(cnt + 1)).ok() || !(s = sl.h_bucket.reserve(nf)).ok() || !(s = sl.h_weight.reserve(nf)).ok() ||
          !(s = sl.h_choice.reserve(cnt)).ok() || !(s = sl.h_cluster.reserve(cnt)).ok() || !(s = sl.h_dist.reserve(cnt)).ok() ||
          !(s = sl.h_gamma.reserve(out.gamma ? cnt * M : 1)).ok() || !(s = sl.h_allowed.reserve(per_row ? cnt * M : 1)).ok() ||
          !(s = sl.d_rows.reserve(cnt + 1)).ok() || !(s = sl.d_bucket.reserve(nf)).ok() || !(s = sl.d_weight.reserve(nf)).ok() ||
          !(s = sl.d_choice.reserve(cnt)).ok() || !(s = sl.d_cluster.reserve(cnt)).ok() || !(s = sl.d_dist.reserve(cnt)).ok() ||
          !(s = sl.d_gamma.reserve(out.gamma ? cnt * M : 1)).ok() || !(s = sl.d_allowed.reserve(per_row ? cnt * M : 1)).ok())
        return s;
      std::memcpy(sl.h_rows.get(), sl.rows.data(), (cnt + 1) * sizeof(uint32_t));
      std::memcpy(sl.h_bucket.get(), sl.bucket.data(), nf * sizeof(uint32_t));
      std::memcpy(sl.h_weight.get(), sl.weight.data(), nf * sizeof(float));
      if (per_row) std::memcpy(sl.h_allowed.get(), pool.allowed + b * M, cnt * M);
      cudaStream_t str = sl.stream.get();
      UR_CUDA(cudaMemcpyAsync(sl.d_rows.get(), sl.h_rows.get(), (cnt + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice, str));
      UR_CUDA(cudaMemcpyAsync(sl.d_bucket.get(), sl.h_bucket.get(), nf * sizeof(uint32_t), cudaMemcpyHostToDevice, str));
      UR_CUDA(cudaMemcpyAsync(sl.d_weight.get(), sl.h_weight.get(), nf * sizeof(float), cudaMemcpyHostToDevice, str));
      if (per_row) UR_CUDA(cudaMemcpyAsync(sl.d_allowed.get(), sl.h_allowed.get(), cnt * M, cudaMemcpyHostToDevice, str));
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
      UR_CUDA(cudaEventRecord(sl.done.get(), str));
      sl.begin = b;
      sl.count = cnt;
      sl.busy = true;
    }
    for (int i = 0; i < 2; ++i)
      if (!(s = finish(slots[i])).ok()) return s;
    return Status::Ok();
  };
  st = run();
  if (!st.ok()) {
    // nothing of this call may still be in flight when the buffers are reused by the next one
    for (int i = 0; i < 2; ++i) {
      if (slots[i].stream.get()) cudaStreamSynchronize(slots[i].stream.get());
      slots[i].busy = false;
    }
  }
  return st;
}

}  // namespace cuda
}  // namespace uniroute
