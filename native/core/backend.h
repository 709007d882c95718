// The backend registry: every op the engine runs on more than one kind of hardware goes through one dispatcher,
// which picks, per call, the selected backend when it runs that op for those arguments, and the CPU otherwise.
// Adding a backend is one class; adding an op is one entry in Op, one args struct and one virtual. A backend that
// fails (other than on bad input) has its call rerun on the CPU, so a caller never gets a wrong answer; a sticky
// failure (Code::DeviceLost) marks it unusable for the rest of the process's life, with one warning and a count.
// Plain C++: the N-API binding keeps one Engine per addon instance.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common.h"
#include "embed.h"
#include "route.h"
#include "score.h"

namespace uniroute {

enum class Op { Embed, Assign, ScoreHard, Route };
const char* op_name(Op op);

struct EmbedArgs {
  const Projection* proj;
  const TextRef* texts;
  size_t n;
  float* out;  // n x dim
  int threads;
};
struct AssignArgs {
  const float* X;  // n x d
  size_t n, d;
  const float* C;  // k x d
  size_t k;
  int32_t* idx;
  float* dist;  // n or null
  int threads;
};
struct ScoreHardArgs {
  const Pool* pool;
  const int32_t* clusters;
  size_t n;
  int32_t* choice;
  float* gamma;  // n x m or null
  int threads;
  const float* resid = nullptr;
  const int32_t* cells = nullptr;
};
struct RouteArgs {
  const Projection* proj;
  const TextRef* texts;
  size_t n;
  const float* centroids;
  const Pool* pool;
  RouteOutputs out;
  int threads;
  const Difficulty* diff = nullptr;
  const EvidenceCells* cells = nullptr;
  const float* centroid_norms = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Whether it can run at all here (a device and a driver); `why` says why not.
  virtual bool usable(std::string* why) const = 0;
  // Whether it runs `op` for these arguments (false: the dispatcher uses the CPU). The CPU runs every op.
  virtual bool runs(const EmbedArgs&) const { return false; }
  virtual bool runs(const AssignArgs&) const { return false; }
  virtual bool runs(const ScoreHardArgs&) const { return false; }
  virtual bool runs(const RouteArgs&) const { return false; }
  virtual Status run(const EmbedArgs&) { return unsupported(Op::Embed); }
  virtual Status run(const AssignArgs&) { return unsupported(Op::Assign); }
  virtual Status run(const ScoreHardArgs&) { return unsupported(Op::ScoreHard); }
  virtual Status run(const RouteArgs&) { return unsupported(Op::Route); }

 protected:
  Status unsupported(Op op) const { return Status::Internal(name() + " does not run " + op_name(op)); }
};

std::unique_ptr<Backend> make_cpu_backend();
std::unique_ptr<Backend> make_cuda_backend();  // present in every build; unusable where CUDA was not compiled in

class Engine {
 public:
  Engine();  // cpu, then cuda
  // Adds a backend (a test registers a failing one); names are unique.
  void add(std::unique_ptr<Backend> b);
  // "cpu", a registered name, or "auto" (the first usable non-CPU backend, else the CPU). An unusable backend is
  // refused with the reason.
  Status select(const std::string& name);
  std::string selected() const;
  // The backend that would run these arguments now.
  template <typename A>
  std::string would_run(const A& a) const {
    std::lock_guard<std::mutex> lk(mu_);
    Backend* b = pick(a);
    return b->name();
  }
  template <typename A>
  Status run(const A& a) {
    Backend* b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      b = pick(a);
    }
    if (b == cpu_) return cpu_->run(a);
    Status st = b->run(a);
    if (st.ok() || st.code == Code::InvalidArgument) return st;
    fallback(b, st);
    return cpu_->run(a);  // the CPU overwrites every output: never a partial answer from the failed backend
  }
  int threads() const { return threads_.load(); }
  void set_threads(int t) { threads_ = t; }
  // Calls that a failing backend handed to the CPU, and the last failure's message.
  size_t fallbacks() const { return fallbacks_.load(); }
  std::string last_failure() const;
  // Called once per backend that becomes unusable (the binding prints a warning).
  void on_disabled(std::function<void(const std::string& backend, const std::string& why)> f) { warn_ = std::move(f); }
  std::vector<std::string> names() const;

 private:
  template <typename A>
  Backend* pick(const A& a) const {
    if (selected_ != cpu_ && !disabled(selected_) && selected_->runs(a)) return selected_;
    return cpu_;
  }
  bool disabled(const Backend* b) const;
  void fallback(Backend* b, const Status& st);
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Backend>> all_;
  std::vector<const Backend*> dead_;
  Backend* cpu_ = nullptr;
  Backend* selected_ = nullptr;
  std::atomic<int> threads_{0};
  std::atomic<size_t> fallbacks_{0};
  std::string last_failure_;
  std::function<void(const std::string&, const std::string&)> warn_;
};

}  // namespace uniroute
