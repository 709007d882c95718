// uniroute native core: shared helpers. Plain C++17, no N-API. Functions return Status, never abort.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace uniroute {

enum class Code { Ok = 0, InvalidArgument, OutOfMemory, Internal };

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
inline int default_threads() {
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(std::min(h, 64u));
}

// Splits [0, n) into contiguous chunks, one per thread, and runs fn(begin, end, thread_index).
// Small jobs run inline. The first failure (Status or exception) is kept and returned after the join.
inline Status parallel_for(size_t n, int threads, size_t min_per_thread,
                           const std::function<Status(size_t, size_t, int)>& fn) {
  if (n == 0) return Status::Ok();
  if (threads <= 0) threads = default_threads();
  size_t max_useful = std::max<size_t>(1, n / std::max<size_t>(1, min_per_thread));
  size_t t = std::min<size_t>(static_cast<size_t>(threads), max_useful);
  auto run_guarded = [&](size_t b, size_t e, int ti) -> Status {
    try {
      return fn(b, e, ti);
    } catch (const std::bad_alloc&) {
      return Status::Oom("out of memory");
    } catch (const std::exception& ex) {
      return Status::Internal(ex.what());
    } catch (...) {
      return Status::Internal("unknown native error");
    }
  };
  if (t <= 1) return run_guarded(0, n, 0);
  std::vector<Status> results(t);
  std::vector<std::thread> pool;
  size_t chunk = (n + t - 1) / t;
  try {
    for (size_t i = 1; i < t; ++i) {
      size_t b = i * chunk, e = std::min(n, b + chunk);
      if (b >= e) break;
      pool.emplace_back([&, b, e, i] { results[i] = run_guarded(b, e, static_cast<int>(i)); });
    }
  } catch (...) {
    // Could not start a thread: finish what was started, run the rest inline.
  }
  results[0] = run_guarded(0, std::min(n, chunk), 0);
  size_t started = pool.size();
  for (auto& th : pool) th.join();
  for (size_t i = started + 1; i < t; ++i) {
    size_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e) results[i] = run_guarded(b, e, 0);
  }
  for (auto& r : results)
    if (!r.ok()) return r;
  return Status::Ok();
}

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
