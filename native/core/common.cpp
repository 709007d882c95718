#include "common.h"

#include <cmath>

namespace uniroute {

double Rng::normal() {
  double u1 = uniform();
  double u2 = uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

namespace {
thread_local bool t_in_run = false;  // this thread is running a part of a parallel_for
std::atomic<size_t> g_threads_started{0};

Status guarded(const std::function<Status(size_t, size_t, int)>& fn, size_t b, size_t e, int ti) {
  try {
    return fn(b, e, ti);
  } catch (const std::bad_alloc&) {
    return Status::Oom("out of memory");
  } catch (const std::exception& ex) {
    return Status::Internal(ex.what());
  } catch (...) {
    return Status::Internal("unknown native error");
  }
}
}  // namespace

WorkerPool& WorkerPool::instance() {
  // never destroyed: joining at static destruction would race with an addon being unloaded
  static WorkerPool* pool = new WorkerPool(static_cast<size_t>(std::max(0, default_threads() - 1)));
  return *pool;
}

size_t WorkerPool::threads_started() { return g_threads_started.load(); }

WorkerPool::WorkerPool(size_t workers) {
  for (size_t i = 0; i < workers; ++i) {
    try {
      threads_.emplace_back([this] { loop(); });
      g_threads_started++;
    } catch (...) {
      break;  // fewer workers: the parts queue on those there are
    }
  }
}

void WorkerPool::loop() {
  t_in_run = true;  // a parallel_for inside a part runs inline
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    wake_.wait(lk, [&] { return generation_ != seen; });
    seen = generation_;
    const std::function<void(size_t)>* job = job_;
    const size_t parts = parts_;
    if (!job) continue;
    active_++;
    lk.unlock();
    for (size_t i; (i = next_.fetch_add(1)) < parts;) {
      (*job)(i);
      finished_.fetch_add(1);
    }
    lk.lock();
    active_--;
    done_.notify_all();
  }
}

bool WorkerPool::try_run(size_t parts, const std::function<void(size_t)>& job) {
  if (t_in_run || threads_.empty()) return false;
  std::unique_lock<std::mutex> run(run_mu_, std::try_to_lock);
  if (!run.owns_lock()) return false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &job;
    parts_ = parts;
    next_ = 0;
    finished_ = 0;
    generation_++;
  }
  wake_.notify_all();
  t_in_run = true;
  for (size_t i; (i = next_.fetch_add(1)) < parts;) {
    job(i);
    finished_.fetch_add(1);
  }
  t_in_run = false;
  std::unique_lock<std::mutex> lk(mu_);
  // every part done, and no worker still holds this run's job (a late one must not take an index of the next)
  done_.wait(lk, [&] { return finished_.load() == parts && active_ == 0; });
  job_ = nullptr;
  return true;
}

Status parallel_for(size_t n, int threads, size_t min_per_thread, const std::function<Status(size_t, size_t, int)>& fn) {
  if (n == 0) return Status::Ok();
  if (threads <= 0) threads = default_threads();
  size_t max_useful = std::max<size_t>(1, n / std::max<size_t>(1, min_per_thread));
  size_t t = std::min<size_t>(static_cast<size_t>(threads), max_useful);
  if (t <= 1) return guarded(fn, 0, n, 0);
  std::vector<Status> results(t);
  const size_t chunk = (n + t - 1) / t;
  const std::function<void(size_t)> part = [&](size_t i) {
    const size_t b = i * chunk, e = std::min(n, b + chunk);
    if (b < e) results[i] = guarded(fn, b, e, static_cast<int>(i));
  };
  if (!WorkerPool::instance().try_run(t, part)) {
    // the pool is busy (or this is a nested call): threads of our own, as many as can be started
    std::vector<std::thread> own;
    if (!t_in_run) {
      try {
        for (size_t i = 1; i < t; ++i) own.emplace_back(part, i);
      } catch (...) {
      }
    }
    part(0);
    const size_t started = own.size();
    for (auto& th : own) th.join();
    for (size_t i = started + 1; i < t; ++i) part(i);
  }
  for (auto& r : results)
    if (!r.ok()) return r;
  return Status::Ok();
}

}  // namespace uniroute
