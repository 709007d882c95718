// Embedding on the GPU: one warp per prompt gathers the int8 projection rows of its hashed features.
#include <algorithm>
#include <cstring>

#include "common.cuh"

namespace uniroute {
namespace cuda {

__global__ void embed_kernel(const uint32_t* row_ptr, const uint32_t* bucket, const float* weight, int n,
                             const int8_t* q, const float* scale, int D, float* out) {
  const int i = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (i >= n) return;
  float acc[kMaxDimsPerLane];
  warp_embed(bucket, weight, row_ptr[i], row_ptr[i + 1], q, scale, D, acc);
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < D) out[static_cast<size_t>(i) * D + d] = acc[j];
  }
}

Status embed_batch(const Projection& p, const TextRef* texts, size_t n, float* out, int threads) {
  if (!probe().available) return Status::Invalid("the CUDA backend is unavailable: " + probe().reason);
  const int D = static_cast<int>(p.cfg.dim);
  if (D > 32 * kMaxDimsPerLane) return Status::Invalid("the CUDA backend supports embedding dimensions up to 512");
  if (n == 0) return Status::Ok();
  DeviceState& g = state();
  const int8_t* q;
  const float* scale;
  Status s = upload_projection(p, &q, &scale);
  if (!s.ok()) return s;
  // chunks of at most kRows prompts, two in flight: the CPU hashes one while the GPU projects the other
  constexpr size_t kRows = 1 << 16;
  return pipeline(
      g.aux, n, kRows,
      [&](Slot& sl, size_t b, size_t e) -> Status {
        const size_t cnt = e - b;
        Status r;
        if (!(r = hash_chunk(p, texts, b, e, threads, sl.rows, sl.bucket, sl.weight)).ok()) return r;
        const size_t nf = sl.bucket.size();
        if (!(r = sl.h_rows.reserve(cnt + 1)).ok() || !(r = sl.h_bucket.reserve(nf)).ok() || !(r = sl.h_weight.reserve(nf)).ok() ||
            !(r = sl.d_rows.reserve(cnt + 1)).ok() || !(r = sl.d_bucket.reserve(nf)).ok() || !(r = sl.d_weight.reserve(nf)).ok() ||
            !(r = sl.h_x.reserve(cnt * D)).ok() || !(r = sl.d_x.reserve(cnt * D)).ok())
          return r;
        std::memcpy(sl.h_rows.get(), sl.rows.data(), (cnt + 1) * sizeof(uint32_t));
        std::memcpy(sl.h_bucket.get(), sl.bucket.data(), nf * sizeof(uint32_t));
        std::memcpy(sl.h_weight.get(), sl.weight.data(), nf * sizeof(float));
        cudaStream_t str = sl.stream.get();
        UR_CUDA(cudaMemcpyAsync(sl.d_rows.get(), sl.h_rows.get(), (cnt + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice, str));
        UR_CUDA(cudaMemcpyAsync(sl.d_bucket.get(), sl.h_bucket.get(), nf * sizeof(uint32_t), cudaMemcpyHostToDevice, str));
        UR_CUDA(cudaMemcpyAsync(sl.d_weight.get(), sl.h_weight.get(), nf * sizeof(float), cudaMemcpyHostToDevice, str));
        const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
        embed_kernel<<<blocks, 32 * kWarpsPerBlock, 0, str>>>(sl.d_rows.get(), sl.d_bucket.get(), sl.d_weight.get(), static_cast<int>(cnt), q,
                                                               scale, D, sl.d_x.get());
        UR_CUDA(cudaGetLastError());
        UR_CUDA(cudaMemcpyAsync(sl.h_x.get(), sl.d_x.get(), cnt * D * sizeof(float), cudaMemcpyDeviceToHost, str));
        return Status::Ok();
      },
      [&](Slot& sl) -> Status {
        std::memcpy(out + sl.begin * D, sl.h_x.get(), sl.count * D * sizeof(float));
        return Status::Ok();
      });
}

}  // namespace cuda
}  // namespace uniroute
