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
  std::lock_guard<std::mutex> lock(context().mu);
  const int8_t* q;
  const float* scale;
  Status st = upload_projection(p, &q, &scale);
  if (!st.ok()) return st;
  // chunks of at most kRows prompts: device memory stays bounded whatever the batch
  constexpr size_t kRows = 1 << 16;
  std::vector<uint32_t> row_ptr, bucket;
  std::vector<float> weight;
  DeviceBuffer<uint32_t> d_rows, d_bucket;
  DeviceBuffer<float> d_weight, d_out;
  auto run = [&]() -> Status {
    Status s;
    for (size_t b = 0; b < n; b += kRows) {
      const size_t e = std::min(n, b + kRows), cnt = e - b;
      hash_chunk(p, texts, b, e, threads, row_ptr, bucket, weight);
      if (!(s = d_rows.reserve(cnt + 1)).ok() || !(s = d_bucket.reserve(bucket.size())).ok() ||
          !(s = d_weight.reserve(weight.size())).ok() || !(s = d_out.reserve(cnt * D)).ok())
        return s;
      UR_CUDA(cudaMemcpy(d_rows.ptr, row_ptr.data(), (cnt + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice));
      UR_CUDA(cudaMemcpy(d_bucket.ptr, bucket.data(), bucket.size() * sizeof(uint32_t), cudaMemcpyHostToDevice));
      UR_CUDA(cudaMemcpy(d_weight.ptr, weight.data(), weight.size() * sizeof(float), cudaMemcpyHostToDevice));
      const int blocks = static_cast<int>((cnt + kWarpsPerBlock - 1) / kWarpsPerBlock);
      embed_kernel<<<blocks, 32 * kWarpsPerBlock>>>(d_rows.ptr, d_bucket.ptr, d_weight.ptr, static_cast<int>(cnt), q, scale, D, d_out.ptr);
      UR_CUDA(cudaGetLastError());
      UR_CUDA(cudaMemcpy(out + b * D, d_out.ptr, cnt * D * sizeof(float), cudaMemcpyDeviceToHost));
    }
    return Status::Ok();
  };
  st = run();
  d_rows.free();
  d_bucket.free();
  d_weight.free();
  d_out.free();
  return st;
}

}  // namespace cuda
}  // namespace uniroute
