// Probing the device, the shared context, uploading the projection, hashing on CPU threads.
#include <algorithm>
#include <cstring>
#include <atomic>
#include <memory>

#include "common.cuh"

namespace uniroute {
namespace cuda {

const DeviceInfo& probe() {
  static const DeviceInfo info = [] {
    DeviceInfo d;
    d.compiled = true;
    cudaRuntimeGetVersion(&d.runtime_version);
    cudaDriverGetVersion(&d.driver_version);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      // cudaDriverGetVersion gives 0 where no driver is installed at all: say that, not "insufficient"
      auto ver = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
      if ((e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) && d.driver_version == 0)
        d.reason = "no NVIDIA driver is installed (libcuda was not found)";
      else if (e == cudaErrorInsufficientDriver)
        d.reason = "the NVIDIA driver supports CUDA " + ver(d.driver_version) + " but this build needs " + ver(d.runtime_version) +
                   " (update the driver)";
      else
        d.reason = std::string(cudaGetErrorString(e)) + " (cudaGetDeviceCount error " + std::to_string(static_cast<int>(e)) + ")";
      cudaGetLastError();
      return d;
    }
    if (count == 0) {
      d.reason = "no CUDA device";
      return d;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, 0);
    if (e != cudaSuccess) {
      d.reason = cudaGetErrorString(e);
      return d;
    }
    d.name = prop.name;
    d.compute_major = prop.major;
    d.compute_minor = prop.minor;
    d.memory_bytes = prop.totalGlobalMem;
    if (prop.major * 10 + prop.minor < 75) {
      d.reason = "compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                 " is below 7.5, the oldest this build targets";
      return d;
    }
    d.available = true;
    return d;
  }();
  return info;
}

namespace {
std::atomic<uint64_t> g_generation{1};  // bumped by release(): every thread drops its state at its next call
}  // namespace

DeviceState& state() {
  thread_local std::unique_ptr<DeviceState> st;
  const uint64_t g = g_generation.load();
  if (!st || st->generation != g) {
    st.reset(new DeviceState());
    st->generation = g;
  }
  return *st;
}

void release() {
  if (!probe().available) return;
  g_generation++;
  state();  // this thread's state, dropped now
}

Status upload_projection(const Projection& p, const int8_t** q, const float** scale) {
  DeviceProjection& dp = state().proj;
  if (p.id == 0 || dp.id != p.id) {
    dp.id = 0;  // a failed upload leaves no stale id behind
    Status st = dp.q.reserve(p.q.size());
    if (!st.ok()) return st;
    if (!(st = dp.scale.reserve(p.scale.size())).ok()) return st;
    UR_CUDA(cudaMemcpy(dp.q.get(), p.q.data(), p.q.size(), cudaMemcpyHostToDevice));
    UR_CUDA(cudaMemcpy(dp.scale.get(), p.scale.data(), p.scale.size() * sizeof(float), cudaMemcpyHostToDevice));
    dp.id = p.id;
  }
  *q = dp.q.get();
  *scale = dp.scale.get();
  return Status::Ok();
}

Status hash_chunk(const Projection& p, const TextRef* texts, size_t b, size_t e, int threads,
                  std::vector<uint32_t>& row_ptr, std::vector<uint32_t>& bucket, std::vector<float>& weight) {
  const size_t n = e - b;
  int t = threads <= 0 ? default_threads() : threads;
  t = static_cast<int>(std::min<size_t>(static_cast<size_t>(t), std::max<size_t>(1, n / 64)));
  std::vector<std::vector<Feature>> parts(static_cast<size_t>(t));
  std::vector<std::vector<uint32_t>> counts(static_cast<size_t>(t));
  const size_t per = (n + t - 1) / t;
  Status hashed = parallel_for(static_cast<size_t>(t), t, 1, [&](size_t tb, size_t te, int) {
    for (size_t ti = tb; ti < te; ++ti) {
      FeatureExtractor fx(p.cfg);
      std::vector<Feature> f;
      const size_t s = b + ti * per, stop = std::min(e, s + per);
      for (size_t i = s; i < stop; ++i) {
        fx.extract(texts[i].data, texts[i].len, f);
        counts[ti].push_back(static_cast<uint32_t>(f.size()));
        parts[ti].insert(parts[ti].end(), f.begin(), f.end());
      }
    }
    return Status::Ok();
  });
  if (!hashed.ok()) return hashed;
  row_ptr.assign(n + 1, 0);
  size_t r = 0, total = 0;
  for (auto& c : counts)
    for (uint32_t x : c) {
      total += x;
      row_ptr[++r] = static_cast<uint32_t>(total);
    }
  bucket.resize(total);
  weight.resize(total);
  size_t o = 0;
  for (auto& part : parts)
    for (const Feature& f : part) {
      bucket[o] = f.bucket;
      weight[o] = f.weight;
      ++o;
    }
  return Status::Ok();
}

Status stage_hashed(Slot& sl, const Projection& p, const TextRef* texts, size_t b, size_t e, int threads) {
  const size_t cnt = e - b;
  Status r;
  if (!(r = hash_chunk(p, texts, b, e, threads, sl.rows, sl.bucket, sl.weight)).ok()) return r;
  const size_t nf = sl.bucket.size();
  if (!(r = sl.h_rows.reserve(cnt + 1)).ok() || !(r = sl.h_bucket.reserve(nf)).ok() || !(r = sl.h_weight.reserve(nf)).ok() ||
      !(r = sl.d_rows.reserve(cnt + 1)).ok() || !(r = sl.d_bucket.reserve(nf)).ok() || !(r = sl.d_weight.reserve(nf)).ok())
    return r;
  std::memcpy(sl.h_rows.get(), sl.rows.data(), (cnt + 1) * sizeof(uint32_t));
  std::memcpy(sl.h_bucket.get(), sl.bucket.data(), nf * sizeof(uint32_t));
  std::memcpy(sl.h_weight.get(), sl.weight.data(), nf * sizeof(float));
  cudaStream_t str = sl.stream.get();
  UR_CUDA(cudaMemcpyAsync(sl.d_rows.get(), sl.h_rows.get(), (cnt + 1) * sizeof(uint32_t), cudaMemcpyHostToDevice, str));
  UR_CUDA(cudaMemcpyAsync(sl.d_bucket.get(), sl.h_bucket.get(), nf * sizeof(uint32_t), cudaMemcpyHostToDevice, str));
  UR_CUDA(cudaMemcpyAsync(sl.d_weight.get(), sl.h_weight.get(), nf * sizeof(float), cudaMemcpyHostToDevice, str));
  return Status::Ok();
}

}  // namespace cuda
}  // namespace uniroute
