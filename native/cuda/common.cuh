// Shared by the CUDA kernels: error handling (CUDA errors become Status), warp reductions, the device context.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "backend.h"

#define UR_CUDA(expr)                                              \
  do {                                                             \
    cudaError_t ur_err_ = (expr);                                  \
    if (ur_err_ != cudaSuccess) return ::uniroute::cuda::cuda_status(ur_err_, #expr); \
  } while (0)

namespace uniroute {
namespace cuda {

// A CUDA error as a Status: device out-of-memory is OutOfMemory (the call is rerun on the CPU), an error that
// poisons the context (an illegal address, a failed launch, ECC) is DeviceLost (the backend is disabled: every
// later call in this process would fail too), anything else Internal.
inline Status cuda_status(cudaError_t e, const char* expr) {
  std::string m = std::string("CUDA error: ") + cudaGetErrorString(e) + " (" + expr + ")";
  switch (e) {
    case cudaErrorMemoryAllocation:
      return Status::Oom(m);
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorECCUncorrectable:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
      return Status{Code::DeviceLost, m};
    default:
      return Status::Internal(m);
  }
}

constexpr int kMaxDimsPerLane = 16;  // dim <= 512 on the GPU
constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Lexicographic (score, cost, index) minimum across the warp: every lane ends with the winner.
__device__ __forceinline__ void warp_argmin(double& s, float& c, int& j) {
  for (int o = 16; o > 0; o >>= 1) {
    double s2 = __shfl_xor_sync(0xffffffffu, s, o);
    float c2 = __shfl_xor_sync(0xffffffffu, c, o);
    int j2 = __shfl_xor_sync(0xffffffffu, j, o);
    bool take = j2 >= 0 && (j < 0 || s2 < s || (s2 == s && (c2 < c || (c2 == c && j2 < j))));
    if (take) {
      s = s2;
      c = c2;
      j = j2;
    }
  }
}

// RAII owners. Buffers grow (never shrink) and are reused across calls; each frees what it holds when destroyed
// (at thread exit for the per-thread state below). Move-only: a copy would free twice.
inline cudaError_t device_alloc(void** p, size_t bytes) { return cudaMalloc(p, bytes); }
inline cudaError_t device_free(void* p) { return cudaFree(p); }
inline cudaError_t pinned_alloc(void** p, size_t bytes) { return cudaMallocHost(p, bytes); }
inline cudaError_t pinned_free(void* p) { return cudaFreeHost(p); }

template <typename T, cudaError_t (*Alloc)(void**, size_t), cudaError_t (*Free)(void*)>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { free(); }
  Status reserve(size_t n) {
    if (n <= cap_) return Status::Ok();
    free();
    UR_CUDA(Alloc(reinterpret_cast<void**>(&ptr_), std::max<size_t>(n, 1) * sizeof(T)));
    cap_ = n;
    return Status::Ok();
  }
  void free() {
    if (ptr_) Free(ptr_);
    ptr_ = nullptr;
    cap_ = 0;
  }
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  size_t cap_ = 0;
};
template <typename T>
using DeviceBuffer = Buffer<T, device_alloc, device_free>;
template <typename T>
using PinnedBuffer = Buffer<T, pinned_alloc, pinned_free>;

class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { reset(); }
  Status ensure() {
    if (!s_) UR_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
    return Status::Ok();
  }
  void reset() {
    if (s_) {
      cudaStreamSynchronize(s_);
      cudaStreamDestroy(s_);
    }
    s_ = nullptr;
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Status ensure() {
    if (!e_) UR_CUDA(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming));
    return Status::Ok();
  }
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// The projection table on the device, uploaded once per fitted embedder (keyed by its id).
struct DeviceProjection {
  uint64_t id = 0;
  DeviceBuffer<int8_t> q;
  DeviceBuffer<float> scale;
};

// One pipeline slot of the fused route: its stream, the event that marks its chunk done, the CPU-side hashing
// output and the pinned and device buffers of one chunk.
struct Slot {
  Stream stream;
  Event done;
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
  // embed, assign and score use the same slots: rows of floats in or out (h_x / d_x), ids in (h_in / d_in)
  PinnedBuffer<float> h_x;
  DeviceBuffer<float> d_x;
  PinnedBuffer<int32_t> h_in;
  DeviceBuffer<int32_t> d_in;
};

// Two slots in turn: while the GPU works on one chunk (copy in, kernel, copy out on the slot's stream), the CPU
// prepares the next in the other slot's pinned buffers. `start(slot, b, e)` fills and enqueues chunk [b, e);
// `done(slot)` runs on the CPU once the slot's previous chunk has finished (its event), to copy outputs out.
template <typename Start, typename Done>
Status pipeline(Slot* slots, size_t n, size_t chunk, Start&& start, Done&& done) {
  Status st;
  for (int i = 0; i < 2; ++i)
    if (!(st = slots[i].stream.ensure()).ok() || !(st = slots[i].done.ensure()).ok()) return st;
  auto finish = [&](Slot& s) -> Status {
    if (!s.busy) return Status::Ok();
    s.busy = false;
    UR_CUDA(cudaEventSynchronize(s.done.get()));
    return done(s);
  };
  size_t index = 0;
  for (size_t b = 0; b < n; b += chunk, ++index) {
    Slot& s = slots[index & 1];
    if (!(st = finish(s)).ok()) break;
    const size_t e = std::min(n, b + chunk);
    if (!(st = start(s, b, e)).ok()) break;
    if (cudaError_t err = cudaEventRecord(s.done.get(), s.stream.get())) {
      st = cuda_status(err, "cudaEventRecord");
      break;
    }
    s.begin = b;
    s.count = e - b;
    s.busy = true;
  }
  for (int i = 0; i < 2 && st.ok(); ++i) st = finish(slots[i]);
  if (!st.ok())  // nothing of this call may still be in flight when the buffers are reused
    for (int i = 0; i < 2; ++i) {
      if (slots[i].stream.get()) cudaStreamSynchronize(slots[i].stream.get());
      slots[i].busy = false;
    }
  return st;
}

// Everything the CUDA backend keeps between calls, one per engine thread (a libuv worker, or the JS thread for
// sync calls): two streams and their slots, the model's tensors, the projection, the staging buffers. There is no
// device-wide lock: threads never share a buffer or a stream, CPU hashing never holds anything, and the CUDA
// runtime orders each thread's streams. release() drops the calling thread's state and tells the others to drop
// theirs at their next call.
struct DeviceState {
  uint64_t generation = 0;
  DeviceProjection proj;
  Slot slots[2];  // the fused route's
  Slot aux[2];    // embed, assign and score
  DeviceBuffer<float> centroids, norms, psi, cost;  // the model's tensors, uploaded per call
  DeviceBuffer<uint8_t> mask;                        // a mask shared by every row
};
// The calling thread's state (created on first use, dropped when release() was called since).
DeviceState& state();

// Makes sure the projection is on the device; returns its device pointers.
Status upload_projection(const Projection& p, const int8_t** q, const float** scale);

// Hashes texts [b, e) on CPU threads into CSR (row offsets relative to the chunk). A failure (out of memory) is
// returned: a chunk hashed in part would route its prompts on empty features.
Status hash_chunk(const Projection& p, const TextRef* texts, size_t b, size_t e, int threads,
                  std::vector<uint32_t>& row_ptr, std::vector<uint32_t>& bucket, std::vector<float>& weight);

// Texts [b, e) hashed into the slot (hash_chunk) and their CSR copied to the device on the slot's stream, through
// its pinned buffers: what the embed and route kernels read (d_rows, d_bucket, d_weight).
Status stage_hashed(Slot& sl, const Projection& p, const TextRef* texts, size_t b, size_t e, int threads);

// Device function: the projected, L2-normalised embedding of one prompt, held by a warp (dims lane + 32 j).
__device__ __forceinline__ void warp_embed(const uint32_t* bucket, const float* weight, uint32_t f0, uint32_t f1,
                                           const int8_t* q, const float* scale, int D, float* acc) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) acc[j] = 0.0f;
  for (uint32_t f = f0; f < f1; ++f) {
    const uint32_t b = bucket[f];
    const float w = weight[f] * scale[b];
    if (w == 0.0f) continue;
    const int8_t* row = q + static_cast<size_t>(b) * D;
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < D) acc[j] += w * static_cast<float>(row[d]);
    }
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) ss += acc[j] * acc[j];
  ss = warp_sum(ss);
  if (ss > 0.0f) {
    const float inv = 1.0f / sqrtf(ss);
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) acc[j] *= inv;
  }
}

// Device function: nearest centroid of a warp-held vector; every lane gets the result.
__device__ __forceinline__ void warp_nearest(const float* acc, int D, const float* C, const float* cnorm, int K,
                                             int* best_k, float* best_d2) {
  const int lane = threadIdx.x & 31;
  float xx = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) xx += acc[j] * acc[j];
  xx = warp_sum(xx);
  float best = INFINITY;
  int arg = 0;
  for (int k = 0; k < K; ++k) {
    const float* c = C + static_cast<size_t>(k) * D;
    float dot = 0.0f;
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < D) dot += acc[j] * c[d];
    }
    dot = warp_sum(dot);
    const float d2 = xx - 2.0f * dot + cnorm[k];
    if (d2 < best) {
      best = d2;
      arg = k;
    }
  }
  *best_k = arg;
  *best_d2 = best;
}

// Device function: argmin over the pool for cluster c (psi m x k), with the CPU's tie rule; gamma row optional.
__device__ __forceinline__ int warp_score(const float* psi, const float* cost, int M, int K, int c, float lambda,
                                          const uint8_t* allowed, float* gamma_row) {
  const int lane = threadIdx.x & 31;
  // the score in double, as on the CPU (native/core/score.cpp)
  double bs = INFINITY;
  float bc = 0.0f;
  int bj = -1;
  for (int m = lane; m < M; m += 32) {
    const float g = psi[static_cast<size_t>(m) * K + c];
    if (gamma_row) gamma_row[m] = g;
    if (allowed && !allowed[m]) continue;
    const double s = static_cast<double>(g) + static_cast<double>(lambda) * static_cast<double>(cost[m]);
    if (bj < 0 || s < bs || (s == bs && (cost[m] < bc || (cost[m] == bc && m < bj)))) {
      bs = s;
      bc = cost[m];
      bj = m;
    }
  }
  warp_argmin(bs, bc, bj);
  return bj;
}

}  // namespace cuda
}  // namespace uniroute
