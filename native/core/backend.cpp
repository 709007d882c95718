#include "backend.h"

#include "../cuda/backend.h"
#include "assign.h"

namespace uniroute {

const char* op_name(Op op) {
  switch (op) {
    case Op::Embed: return "embed";
    case Op::Assign: return "assign";
    case Op::ScoreHard: return "score";
    case Op::Route: return "route";
  }
  return "?";
}

namespace {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool usable(std::string*) const override { return true; }
  bool runs(const EmbedArgs&) const override { return true; }
  bool runs(const AssignArgs&) const override { return true; }
  bool runs(const ScoreHardArgs&) const override { return true; }
  bool runs(const RouteArgs&) const override { return true; }
  Status run(const EmbedArgs& a) override { return embed_batch(*a.proj, a.texts, a.n, a.out, a.threads); }
  Status run(const AssignArgs& a) override { return assign_nearest(a.X, a.n, a.d, a.C, a.k, a.idx, a.dist, a.threads); }
  Status run(const ScoreHardArgs& a) override {
    return score_batch_hard(*a.pool, a.clusters, a.n, a.choice, a.gamma, a.threads, a.resid, a.cells);
  }
  Status run(const RouteArgs& a) override {
    return route_batch(*a.proj, a.texts, a.n, a.centroids, *a.pool, a.out, a.threads, a.diff, a.cells, a.centroid_norms);
  }
};

// The CUDA kernels know neither the difficulty slope, nor evidence, nor per-prompt residuals: such calls run on
// the CPU. Projections wider than 512 dimensions are refused by the kernels (InvalidArgument) and so go to the CPU.
class CudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  bool usable(std::string* why) const override {
    const cuda::DeviceInfo& d = cuda::probe();
    if (!d.available && why) *why = d.reason;
    return d.available;
  }
  static bool plain(const Pool& p) { return !p.psi_logit && !p.evidence; }
  bool runs(const EmbedArgs& a) const override { return a.proj->cfg.dim <= 512; }
  bool runs(const AssignArgs&) const override { return true; }
  bool runs(const ScoreHardArgs& a) const override { return plain(*a.pool) && !a.resid && !a.cells; }
  bool runs(const RouteArgs& a) const override { return plain(*a.pool) && a.proj->cfg.dim <= 512; }
  Status run(const EmbedArgs& a) override { return cuda::embed_batch(*a.proj, a.texts, a.n, a.out, a.threads); }
  Status run(const AssignArgs& a) override { return cuda::assign_nearest(a.X, a.n, a.d, a.C, a.k, a.idx, a.dist); }
  Status run(const ScoreHardArgs& a) override { return cuda::score_batch_hard(*a.pool, a.clusters, a.n, a.choice, a.gamma); }
  Status run(const RouteArgs& a) override {
    return cuda::route_batch(*a.proj, a.texts, a.n, a.centroids, *a.pool, a.out, a.threads);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::unique_ptr<Backend>(new CpuBackend()); }
std::unique_ptr<Backend> make_cuda_backend() { return std::unique_ptr<Backend>(new CudaBackend()); }

Engine::Engine() {
  add(make_cpu_backend());
  add(make_cuda_backend());
  cpu_ = all_.front().get();
  selected_ = cpu_;
}

void Engine::add(std::unique_ptr<Backend> b) {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& x : all_)
    if (x->name() == b->name()) return;
  all_.push_back(std::move(b));
}

Status Engine::select(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  if (name == "auto") {
    selected_ = cpu_;
    for (auto& b : all_)
      if (b.get() != cpu_ && !disabled(b.get()) && b->usable(nullptr)) {
        selected_ = b.get();
        break;
      }
    return Status::Ok();
  }
  for (auto& b : all_) {
    if (b->name() != name) continue;
    std::string why;
    if (!b->usable(&why)) return Status::Invalid("the " + name + " backend is unavailable: " + why);
    if (disabled(b.get())) return Status::Invalid("the " + name + " backend was disabled after a failure: " + last_failure_);
    selected_ = b.get();
    return Status::Ok();
  }
  std::string known;
  for (auto& b : all_) known += (known.empty() ? "" : ", ") + b->name();
  return Status::Invalid("unknown backend \"" + name + "\" (known: auto, " + known + ")");
}

std::string Engine::selected() const {
  std::lock_guard<std::mutex> lk(mu_);
  return disabled(selected_) ? cpu_->name() : selected_->name();
}

bool Engine::disabled(const Backend* b) const {
  for (const Backend* d : dead_)
    if (d == b) return true;
  return false;
}

void Engine::fallback(Backend* b, const Status& st) {
  fallbacks_++;
  bool first = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    last_failure_ = b->name() + ": " + st.message;
    if (st.code == Code::DeviceLost && !disabled(b)) {
      dead_.push_back(b);
      first = true;
    }
  }
  if (first && warn_) warn_(b->name(), st.message);
}

std::string Engine::last_failure() const {
  std::lock_guard<std::mutex> lk(mu_);
  return last_failure_;
}

std::vector<std::string> Engine::names() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> r;
  for (auto& b : all_) r.push_back(b->name());
  return r;
}

}  // namespace uniroute
