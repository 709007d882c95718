// uniroute native core: shared helpers. Plain C++17, no N-API. Functions return Status, never abort.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace uniroute {

// DeviceLost: an accelerator failed in a way that poisons its context (a sticky CUDA error): not worth a retry.
// Unsupported: what was asked for cannot run on this machine (an instruction set the CPU lacks).
enum class Code { Ok = 0, InvalidArgument, OutOfMemory, Internal, DeviceLost, Unsupported };

struct Status {
  Code code = Code::Ok;
  std::string message;
  bool ok() const { return code == Code::Ok; }
  static Status Ok() { return {}; }
  static Status Invalid(std::string m) { return {Code::InvalidArgument, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::Internal, std::move(m)}; }
  static Status Oom(std::string m) { return {Code::OutOfMemory, std::move(m)}; }
};

// Number of worker threads to use when the caller passes 0.
// Read once: glibc's hardware_concurrency opens /sys/devices/system/cpu/online on every call (three syscalls per
// routing batch showed in strace).
inline int default_threads() {
  static const int n = [] {
    unsigned h = std::thread::hardware_concurrency();
    return h == 0 ? 1 : static_cast<int>(std::min(h, 64u));
  }();
  return n;
}

// A persistent pool of worker threads, started once (default_threads() - 1 workers, on first use) and shared by
// every parallel_for of the process. One run at a time: a second caller that finds it busy (two libuv workers
// routing at once), or a parallel_for nested inside a part, gets threads of its own (or runs inline), never a
// deadlock. The pool is never destroyed: its threads wait on a condition variable until the process exits.
class WorkerPool {
 public:
  static WorkerPool& instance();
  // Runs job(0) ... job(parts - 1), part 0 on the calling thread, the rest on the workers; returns after every
  // part has finished. False (nothing run) when another run holds the pool or the caller is inside a run.
  bool try_run(size_t parts, const std::function<void(size_t)>& job);
  // Threads the pool has started since the process began (a test checks that repeated calls start none).
  static size_t threads_started();

 private:
  explicit WorkerPool(size_t workers);
  void loop();
  std::mutex run_mu_;  // held by the caller for a whole run
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t parts_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<size_t> finished_{0};
  size_t active_ = 0;  // workers inside the current run
  uint64_t generation_ = 0;
  std::vector<std::thread> threads_;
};

// Splits [0, n) into contiguous chunks, one per thread, and runs fn(begin, end, thread_index) on the worker pool.
// Small jobs run inline. The first failure (Status or exception) is kept and returned after every chunk ended.
Status parallel_for(size_t n, int threads, size_t min_per_thread, const std::function<Status(size_t, size_t, int)>& fn);

// SplitMix64: a small, portable, fully specified PRNG (same stream on every platform).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  // Standard normal (Box-Muller; one value per call for simplicity).
  double normal();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
};

}  // namespace uniroute
