// Embedding on the GPU: one warp per prompt gathers the int8 projection rows of its hashed features.
#include <algorithm>

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
  // chunks of at most kRows prompts: device memory stays bounded whatever the batch
  constexpr size_t kRows = 1 << 16;
  for (size_t b = 0; b < n; b += kRows) {
    const size_t e = std::min(n, b + kRows), cnt = e - b;
    if (!(s = hash_chunk(p, texts, b, e, threads, g.h_rows, g.h_bucket, g.h_weight)).ok()) return s;
    if (!(s = g.rows.reserve(cnt + 1)).ok() || !(s = g.bucket.reserve(g.h_bucket.size())).ok() ||
        !(s = g.weight.reserve(g.h_weight.size())).ok() || !(s = g.out.reserve(cnt * D)).ok())
      return s;
    UR_CUDA(cudaMemcpy(g.rows.get(), g.h_rows.data(), (cnt + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(g.bucket.get(), g.h_bucket.data(), g.h_bucket.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(g.weight.get(), g.h_weight.data(), g.h_weight.size() * sizeof(float), cudaMemcpyHostToDevice));
    const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
    embed_kernel<<<blocks, 32 * kWarpsPerBlock>>>(g.rows.get(), g.bucket.get(), g.weight.get(), static_cast<int>(cnt), q, scale, D,
                                                  g.out.get());
    UR_CUDA(cudaGetLastError());
    UR_CUDA(cudaMemcpy(out + b * D, g.out.get(), cnt * D * sizeof(float), cudaMemcpyDeviceToHost));
  }
  return Status::Ok();
}

}  // namespace cuda
}  // namespace uniroute
