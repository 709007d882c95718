// The fused route on the GPU. Prompts stream through in chunks: while the GPU works on one chunk (copy in,
// kernel, copy out on its own stream), CPU threads hash the next into the other slot's pinned buffers.
// Device memory is bounded by the chunk size and released at the end of the call (the projection stays cached).
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

struct Slot {
  cudaStream_t stream = nullptr;
  size_t begin = 0, count = 0;
  bool busy = false;
  std::vector<uint32_t> rows, bucket;
  std::vector<float> weight;
  PinnedBuffer<uint32_t> h_rows, h_bucket;
  PinnedBuffer<float> h_weight, h_dist, h_gamma;
  PinnedBuffer<int32_t> h_choice, h_cluster;
  PinnedBuffer<uint8_t> h_allowed;
  DeviceBuffer<uint32_t> d_rows, d_bucket;
  DeviceBuffer<float> d_weight, d_dist, d_gamma;
  DeviceBuffer<int32_t> d_choice, d_cluster;
  DeviceBuffer<uint8_t> d_allowed;
  void free() {
    if (stream) cudaStreamDestroy(stream);
    stream = nullptr;
    h_rows.free(); h_bucket.free(); h_weight.free(); h_dist.free(); h_gamma.free(); h_choice.free(); h_cluster.free(); h_allowed.free();
    d_rows.free(); d_bucket.free(); d_weight.free(); d_dist.free(); d_gamma.free(); d_choice.free(); d_cluster.free(); d_allowed.free();
  }
};
}  // namespace

Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads) {
  if (!probe().available) return Status::Invalid("the CUDA backend is unavailable: " + probe().reason);
  const int D = static_cast<int>(proj.cfg.dim);
  if (D > 32 * kMaxDimsPerLane) return Status::Invalid("the CUDA backend supports embedding dimensions up to 512");
  if (pool.k == 0) return Status::Invalid("the router has no clusters");
  if (n == 0) return Status::Ok();
  std::lock_guard<std::mutex> lock(context().mu);
  const int8_t* q;
  const float* scale;
  Status st = upload_projection(proj, &q, &scale);
  if (!st.ok()) return st;
  const size_t K = pool.k, M = pool.m;
  const std::vector<float> cn = centroid_norms(centroids, K, static_cast<size_t>(D));
  DeviceBuffer<float> dC, dN, dPsi, dCost;
  DeviceBuffer<uint8_t> dShared;
  Slot slots[2];
  auto finish = [&](Slot& s) -> Status {
    if (!s.busy) return Status::Ok();
    UR_CUDA(cudaStreamSynchronize(s.stream));
    std::memcpy(out.choice + s.begin, s.h_choice.ptr, s.count * sizeof(int32_t));
    std::memcpy(out.cluster + s.begin, s.h_cluster.ptr, s.count * sizeof(int32_t));
    if (out.distance) std::memcpy(out.distance + s.begin, s.h_dist.ptr, s.count * sizeof(float));
    if (out.gamma) std::memcpy(out.gamma + s.begin * M, s.h_gamma.ptr, s.count * M * sizeof(float));
    s.busy = false;
    return Status::Ok();
  };
  auto run = [&]() -> Status {
    Status s;
    if (!(s = dC.reserve(K * D)).ok() || !(s = dN.reserve(K)).ok() || !(s = dPsi.reserve(M * K)).ok() ||
        !(s = dCost.reserve(M)).ok())
      return s;
    UR_CUDA(cudaMemcpy(dC.ptr, centroids, K * D * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(dN.ptr, cn.data(), K * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(dPsi.ptr, pool.psi, M * K * sizeof(float), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(dCost.ptr, pool.cost, M * sizeof(float), cudaMemcpyHostToDevice));
    const bool shared_mask = pool.allowed && !pool.allowed_per_row;
    if (shared_mask) {
      if (!(s = dShared.reserve(M)).ok()) return s;
      UR_CUDA(cudaMemcpy(dShared.ptr, pool.allowed, M, cudaMemcpyHostToDevice));
    }
    for (auto& sl : slots) UR_CUDA(cudaStreamCreateWithFlags(&sl.stream, cudaStreamNonBlocking));
    size_t chunk_index = 0;
    for (size_t b = 0; b < n; b += kChunk, ++chunk_index) {
      Slot& sl = slots[chunk_index & 1];
      if (!(s = finish(sl)).ok()) return s;  // the slot's previous chunk is done: its outputs are copied out
      const size_t e = std::min(n, b + kChunk), cnt = e - b;
      hash_chunk(proj, texts, b, e, threads, sl.rows, sl.bucket, sl.weight);  // overlaps the other slot's GPU work
      const size_t nf = sl.bucket.size();
      const bool per_row = pool.allowed && pool.allowed_per_row;
      if (!(s = sl.h_rows.reserve(cnt + 1)).ok() || !(s = sl.h_bucket.reserve(nf)).ok() || !(s = sl.h_weight.reserve(nf)).ok() ||
          !(s = sl.h_choice.reserve(cnt)).ok() || !(s = sl.h_cluster.reserve(cnt)).ok() || !(s = sl.h_dist.reserve(cnt)).ok() ||
          !(s = sl.h_gamma.reserve(out.gamma ? cnt * M : 1)).ok() || !(s = sl.h_allowed.reserve(per_row ? cnt * M : 1)).ok() ||
          !(s = sl.d_rows.reserve(cnt + 1)).ok() || !(s = sl.d_bucket.reserve(nf)).ok() || !(s = sl.d_weight.reserve(nf)).ok() ||
          !(s = sl.d_choice.reserve(cnt)).ok() || !(s = sl.d_cluster.reserve(cnt)).ok() || !(s = sl.d_dist.reserve(cnt)).ok() ||
          !(s = sl.d_gamma.reserve(out.gamma ? cnt * M : 1)).ok() || !(s = sl.d_allowed.reserve(per_row ? cnt * M : 1)).ok())
        return s;
      std::memcpy(sl.h_rows.ptr, sl.rows.data(), (cnt + 1) * sizeof(uint32_t));
      std::memcpy(sl.h_bucket.ptr, sl.bucket.data(), nf * sizeof(uint32_t));
      std::memcpy(sl.h_weight.ptr, sl.weight.data(), nf * sizeof(float));
      if (per_row) std::memcpy(sl.h_allowed.ptr, pool.allowed + b * M, cnt * M);
      UR_CUDA(cudaMemcpyAsync(sl.d_rows.ptr, sl.h_rows.ptr, (cnt + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice, sl.stream));
      UR_CUDA(cudaMemcpyAsync(sl.d_bucket.ptr, sl.h_bucket.ptr, nf * sizeof(uint32_t), cudaMemcpyHostToDevice, sl.stream));
      UR_CUDA(cudaMemcpyAsync(sl.d_weight.ptr, sl.h_weight.ptr, nf * sizeof(float), cudaMemcpyHostToDevice, sl.stream));
      if (per_row) UR_CUDA(cudaMemcpyAsync(sl.d_allowed.ptr, sl.h_allowed.ptr, cnt * M, cudaMemcpyHostToDevice, sl.stream));
      const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
      route_kernel<<<blocks, 32 * kWarpsPerBlock, 0, sl.stream>>>(
          sl.d_rows.ptr, sl.d_bucket.ptr, sl.d_weight.ptr, static_cast<int>(cnt), q, scale, D, dC.ptr, dN.ptr,
          static_cast<int>(K), dPsi.ptr, dCost.ptr, static_cast<int>(M), pool.lambda,
          per_row ? sl.d_allowed.ptr : (shared_mask ? dShared.ptr : nullptr), per_row ? 1 : 0, sl.d_choice.ptr,
          sl.d_cluster.ptr, sl.d_dist.ptr, out.gamma ? sl.d_gamma.ptr : nullptr);
      UR_CUDA(cudaGetLastError());
      UR_CUDA(cudaMemcpyAsync(sl.h_choice.ptr, sl.d_choice.ptr, cnt * sizeof(int32_t), cudaMemcpyDeviceToHost, sl.stream));
      UR_CUDA(cudaMemcpyAsync(sl.h_cluster.ptr, sl.d_cluster.ptr, cnt * sizeof(int32_t), cudaMemcpyDeviceToHost, sl.stream));
      UR_CUDA(cudaMemcpyAsync(sl.h_dist.ptr, sl.d_dist.ptr, cnt * sizeof(float), cudaMemcpyDeviceToHost, sl.stream));
      if (out.gamma) UR_CUDA(cudaMemcpyAsync(sl.h_gamma.ptr, sl.d_gamma.ptr, cnt * M * sizeof(float), cudaMemcpyDeviceToHost, sl.stream));
      sl.begin = b;
      sl.count = cnt;
      sl.busy = true;
    }
    for (auto& sl : slots)
      if (!(s = finish(sl)).ok()) return s;
    return Status::Ok();
  };
  st = run();
  for (auto& sl : slots) {
    if (sl.stream) cudaStreamSynchronize(sl.stream);
    sl.free();
  }
  dC.free();
  dN.free();
  dPsi.free();
  dCost.free();
  dShared.free();
  return st;
}

}  // namespace cuda
}  // namespace uniroute
