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
        if (!(r = stage_hashed(sl, p, texts, b, e, threads)).ok() || !(r = sl.h_x.reserve(cnt * D)).ok() || !(r = sl.d_x.reserve(cnt * D)).ok())
          return r;
        cudaStream_t str = sl.stream.get();
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
