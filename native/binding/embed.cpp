// The embedder: a class over one projection (embed, and the fused route on texts), and fitting one.
#include "common.h"
#include "ops.h"

namespace uniroute {
namespace binding {

class EmbedderWrap : public Napi::ObjectWrap<EmbedderWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Embedder",
                       {InstanceMethod("embedSync", &EmbedderWrap::EmbedSync),
                        InstanceMethod("embed", &EmbedderWrap::EmbedAsync),
                        InstanceMethod("routeSync", &EmbedderWrap::RouteSync),
                        InstanceMethod("route", &EmbedderWrap::RouteAsync),
                        InstanceMethod("routeModelSync", &EmbedderWrap::RouteModelSync),
                        InstanceAccessor("dim", &EmbedderWrap::Dim, nullptr)});
  }

  explicit EmbedderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EmbedderWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "an object", info[0]);
    Napi::Object o = info[0].As<Napi::Object>();
    auto p = std::make_shared<Projection>();
    p->cfg.buckets_log2 = static_cast<uint32_t>(count(o.Get("bucketsLog2"), "bucketsLog2", 4, 24));
    p->cfg.dim = static_cast<uint32_t>(count(o.Get("dim"), "dim", 1, 4096));
    p->cfg.char_n = static_cast<uint32_t>(count(o.Get("charN"), "charN", 1, 16));
    auto q = i8(o.Get("projection"), "projection");
    auto s = f32(o.Get("scale"), "scale");
    need_len(env, q.ElementLength(), p->cfg.buckets() * p->cfg.dim, "projection", "buckets x dim");
    need_len(env, s.ElementLength(), p->cfg.buckets(), "scale", "one entry per bucket");
    check_finite(env, s.Data(), s.ElementLength(), "scale");
    p->q.assign(q.Data(), q.Data() + q.ElementLength());
    p->scale.assign(s.Data(), s.Data() + s.ElementLength());
    throw_status(env, p->validate());
    p->id = next_projection_id();
    proj_ = std::move(p);
  }

 private:
  std::shared_ptr<Projection> proj_;

  Napi::Value Dim(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), proj_->cfg.dim); }

  struct EmbedJob {
    std::shared_ptr<Texts> texts = std::make_shared<Texts>();
    float* out = nullptr;
  };
  EmbedJob prep_embed(const Napi::CallbackInfo& info) {
    EmbedJob j;
    j.texts->load(info[0], "texts");
    auto out = f32(info[1], "out");
    need_len(info.Env(), out.ElementLength(), j.texts->size() * proj_->cfg.dim, "out", "texts.length x dim");
    j.out = out.Data();
    return j;
  }
  Napi::Value EmbedSync(const Napi::CallbackInfo& info) {
    EmbedJob j = prep_embed(info);
    throw_status(info.Env(), engine(info.Env()).run(EmbedArgs{proj_.get(), j.texts->refs.data(), j.texts->size(), j.out, threads(info.Env())}));
    return info.Env().Undefined();
  }
  Napi::Value EmbedAsync(const Napi::CallbackInfo& info) {
    EmbedJob j = prep_embed(info);
    auto st = std::make_shared<Staged>();
    st->stage({info[1]});
    st->remap(j.out, j.texts->size() * proj_->cfg.dim, true);
    auto proj = proj_;
    int t = threads(info.Env());
    Engine* eng = &engine(info.Env());
    auto* w = new Worker(info.Env(), [j, proj, t, eng, st] {
      return eng->run(EmbedArgs{proj.get(), j.texts->refs.data(), j.texts->size(), j.out, t});
    });
    w->staged(st);
    w->keep(info.This());
    w->Queue();
    return w->promise();
  }

  struct RouteJob : RouteParts {
    std::shared_ptr<Texts> texts = std::make_shared<Texts>();
  };
  // route({texts, centroids, k, psi, cost, m, lambda, allowed?, allowedPerRow?, choice, cluster, distance, gamma?})
  RouteJob prep_route(const Napi::CallbackInfo& info, std::vector<Napi::Value>& keep) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "an object", info[0]);
    Napi::Object o = info[0].As<Napi::Object>();
    RouteJob j;
    j.texts->load(o.Get("texts"), "texts");
    const size_t n = j.texts->size(), D = proj_->cfg.dim;
    static_cast<RouteParts&>(j) = read_route_parts(env, o, n, D, keep);
    return j;
  }
  Napi::Value RouteSync(const Napi::CallbackInfo& info) {
    std::vector<Napi::Value> keep;
    RouteJob j = prep_route(info, keep);
    const Difficulty* diff = j.has_diff ? &j.diff : nullptr;
    throw_status(info.Env(), engine(info.Env()).run(RouteArgs{proj_.get(), j.texts->refs.data(), j.texts->size(), j.centroids, &j.pool, j.out,
                                                               threads(info.Env()), diff, &j.cells, j.centroid_norms}));
    return info.Env().Undefined();
  }
  // routeModelSync(model, texts, lambda, allowed | null, allowedPerRow, choice, cluster, distance, gamma | null,
  //   chosen | null, cellOut | null): routeSync with the fixed parts from a route model (routeModel()), so that a
  // call reads and checks only what changes per call; positional, so that it looks up no property.
  Napi::Value RouteModelSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 11) throw_range(env, "INVALID_ARGUMENT", "routeModelSync takes 11 arguments, got " + std::to_string(info.Length()));
    const RouteModel& model = route_model(info[0], "model");
    if (model.dim != proj_->cfg.dim)
      throw_range(env, "DIMENSION_MISMATCH", "the route model is for " + std::to_string(model.dim) + "-d embeddings; this embedder gives " +
                                                 std::to_string(proj_->cfg.dim));
    Texts texts;
    texts.load(info[1], "texts");
    const size_t n = texts.size(), m = model.parts.pool.m;
    RouteParts p = model.parts;
    p.pool.lambda = static_cast<float>(number(info[2], "lambda"));
    if (!(p.pool.lambda >= 0.0f)) throw_range(env, "INVALID_ARGUMENT", "`lambda` must be >= 0");
    p.pool.allowed_per_row = info[4].ToBoolean();
    p.pool.allowed = opt_arg<uint8_t, napi_uint8_array>(info[3], "allowed", p.pool.allowed_per_row ? n * m : m, p.pool.allowed_per_row ? "n x m" : "m", "a Uint8Array");
    read_route_outputs(env, p, n, info[5], info[6], info[7]);
    p.out.gamma = opt_arg<float, napi_float32_array>(info[8], "gamma", n * m, "rows x m", "a Float32Array");
    p.out.chosen = opt_arg<float, napi_float32_array>(info[9], "chosen", n, "rows", "a Float32Array");
    p.out.cell = p.cells.centroids ? opt_arg<int32_t, napi_int32_array>(info[10], "cellOut", n, "rows", "an Int32Array") : nullptr;
    throw_status(env, engine(env).run(RouteArgs{proj_.get(), texts.refs.data(), n, p.centroids, &p.pool, p.out, threads(env),
                                                p.has_diff ? &p.diff : nullptr, &p.cells, p.centroid_norms}));
    return env.Undefined();
  }
  Napi::Value RouteAsync(const Napi::CallbackInfo& info) {
    std::vector<Napi::Value> keep;
    RouteJob j = prep_route(info, keep);
    auto st = std::make_shared<Staged>();
    stage_route_parts(*st, keep, j, j.texts->size(), proj_->cfg.dim);
    auto proj = proj_;
    int t = threads(info.Env());
    Engine* eng = &engine(info.Env());
    auto job = std::make_shared<RouteJob>(std::move(j));
    auto* w = new Worker(info.Env(), [job, proj, t, eng, st] {
      return eng->run(RouteArgs{proj.get(), job->texts->refs.data(), job->texts->size(), job->centroids, &job->pool, job->out, t,
                                job->has_diff ? &job->diff : nullptr, &job->cells, job->centroid_norms});
    });
    w->staged(st);
    w->keep(info.This());
    w->Queue();
    return w->promise();
  }
};

Napi::Function EmbedderClass(Napi::Env env) { return EmbedderWrap::Init(env); }

// fitEmbedder(texts, {bucketsLog2, dim, charN, seed, minDf, powerIters, oversample}) -> Promise<{projection, scale, ...}>
Napi::Value FitEmbedder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto texts = std::make_shared<Texts>();
  texts->load(info[0], "texts");
  if (texts->size() == 0) throw_range(env, "INVALID_ARGUMENT", "`texts` must not be empty");
  if (!info[1].IsObject()) throw_type(env, "options", "an object", info[1]);
  Napi::Object o = info[1].As<Napi::Object>();
  EmbedConfig cfg;
  cfg.buckets_log2 = static_cast<uint32_t>(opt_count(o, "bucketsLog2", 16, 4, 24));
  cfg.dim = static_cast<uint32_t>(opt_count(o, "dim", 256, 1, 4096));
  cfg.char_n = static_cast<uint32_t>(opt_count(o, "charN", 4, 1, 16));
  EmbedFitOptions fo;
  fo.seed = opt_count(o, "seed", 1, 0, 9007199254740991.0);
  fo.min_df = static_cast<uint32_t>(opt_count(o, "minDf", 2, 1, 1e9));
  fo.power_iters = static_cast<uint32_t>(opt_count(o, "powerIters", 3, 0, 20));
  fo.oversample = static_cast<uint32_t>(opt_count(o, "oversample", 16, 0, 1024));
  fo.threads = threads(info.Env());
  auto proj = std::make_shared<Projection>();
  auto rep = std::make_shared<EmbedFitReport>();
  auto* w = new Worker(
      env, [=] { return fit_projection(texts->refs.data(), texts->size(), cfg, fo, *proj, *rep); },
      [=](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        auto q = Napi::Int8Array::New(e, proj->q.size());
        std::copy(proj->q.begin(), proj->q.end(), q.Data());
        auto s = Napi::Float32Array::New(e, proj->scale.size());
        std::copy(proj->scale.begin(), proj->scale.end(), s.Data());
        auto sv = Napi::Float32Array::New(e, rep->singular_values.size());
        std::copy(rep->singular_values.begin(), rep->singular_values.end(), sv.Data());
        r.Set("projection", q);
        r.Set("scale", s);
        r.Set("singularValues", sv);
        r.Set("keptBuckets", Napi::Number::New(e, static_cast<double>(rep->kept_buckets)));
        r.Set("rank", Napi::Number::New(e, static_cast<double>(rep->rank)));
        return r;
      });
  w->Queue();
  return w->promise();
}

}  // namespace binding
}  // namespace uniroute
