// Routing on rows of embeddings, scoring and the argmin.
#include "common.h"
#include "ops.h"

namespace uniroute {
namespace binding {

// routeVectors({embeddings, dim, centroids, k, psi, cost, m, lambda, allowed?, allowedPerRow?, psiLogit?, slope?,
//   difficulty?: {w, w0, mu}, evidence?, evidenceCells?, evidenceCentroids?, map?: {params, config},
//   choice, cluster, distance, gamma?, chosen?, cellOut?}) -> Promise: decisions for rows of embeddings, off the
// event loop, in bounded chunks.
Napi::Value RouteVectors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "an object", info[0]);
  Napi::Object o = info[0].As<Napi::Object>();
  std::vector<Napi::Value> keep;
  const size_t D = count(o.Get("dim"), "dim", 1, 1 << 20);
  auto X = f32(o.Get("embeddings"), "embeddings");
  if (X.ElementLength() % D) throw_range(env, "DIMENSION_MISMATCH", "`embeddings` is not a whole number of rows of `dim` values");
  const size_t n = X.ElementLength() / D;
  check_finite(env, X.Data(), X.ElementLength(), "embeddings");
  struct Job : RouteParts {
    VectorRoute a;
    std::shared_ptr<MlpConfig> map;
  };
  auto job = std::make_shared<Job>();
  static_cast<RouteParts&>(*job) = read_route_parts(env, o, n, D, keep);
  Napi::Value mv = o.Get("map");
  if (!mv.IsUndefined() && !mv.IsNull()) {
    if (!mv.IsObject()) throw_type(env, "map", "an object {params, config}", mv);
    Napi::Object mo = mv.As<Napi::Object>();
    job->map = std::make_shared<MlpConfig>(mlp_config(env, mo.Get("config")));  // validated there
    if (job->map->in != D || job->map->out != job->pool.k || job->map->head != Head::Mixture)
      throw_range(env, "DIMENSION_MISMATCH", "the learned map must map dim -> k with a mixture head");
    auto P = f32(mo.Get("params"), "map.params");
    need_len(env, P.ElementLength(), job->map->param_count(), "map.params", "the network's parameter count");
    check_finite(env, P.Data(), P.ElementLength(), "map.params");
    job->a.map = job->map.get();
    job->a.map_params = P.Data();
    keep.push_back(mo.Get("params"));
  }
  keep.push_back(o.Get("embeddings"));
  job->a.X = X.Data();
  job->a.n = n;
  job->a.dim = D;
  const int t = threads(info.Env());
  const bool sync = o.Get("sync").ToBoolean();  // small batches: on the calling thread
  std::shared_ptr<Staged> st;
  if (!sync) {  // off the event loop: on copies of every array (see Staged)
    st = std::make_shared<Staged>();
    stage_route_parts(*st, keep, *job, n, D);
    st->remap(job->a.X, n * D);
    if (job->map) st->remap(job->a.map_params, job->map->param_count());
  }
  job->a.centroids = job->centroids;
  job->a.centroid_norms = job->centroid_norms;
  job->a.diff = job->has_diff ? &job->diff : nullptr;
  job->a.cells = job->cells.centroids ? &job->cells : nullptr;
  if (sync) {
    throw_status(env, route_vectors(job->a, job->pool, job->out, t));
    return env.Undefined();
  }
  auto* w = new Worker(env, [job, t, st] { return route_vectors(job->a, job->pool, job->out, t); });
  w->staged(st);
  w->Queue();
  return w->promise();
}

// routeModel({dim, centroids, centroidNorms?, k, psi, cost, m, psiLogit?, slope?, difficulty?, evidence?,
//   evidenceCells?, evidenceCentroids?, evidenceStart?, evidenceNorms?}) -> an opaque route model: the fixed parts of
// a route, checked once and copied (see RouteModel), for Embedder.routeModelSync.
Napi::Value MakeRouteModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "an object", info[0]);
  Napi::Object o = info[0].As<Napi::Object>();
  const size_t D = count(o.Get("dim"), "dim", 1, 4096);
  std::vector<Napi::Value> keep;
  const RouteParts p = read_route_model(env, o, D, keep);
  auto model = std::make_unique<RouteModel>(p, D);
  const int64_t bytes = model->bytes();
  auto ext = Napi::External<RouteModel>::New(env, model.get(), [](Napi::Env e, RouteModel* m) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -m->bytes());
    delete m;
  });
  model.release();  // the External owns it now
  ext.TypeTag(&kRouteModelTag);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return ext;
}

// argminSync({predicted: Float32Array (n x m), cost, m, lambda, allowed?, allowedPerRow?, evidence?, k?, evidenceCells?, cells?, choice})
Napi::Value ArgminSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "an object", info[0]);
  Napi::Object o = info[0].As<Napi::Object>();
  const size_t m = count(o.Get("m"), "m", 1, 1 << 20);
  auto cost = f32(o.Get("cost"), "cost");
  need_len(env, cost.ElementLength(), m, "cost", "m");
  check_finite(env, cost.Data(), cost.ElementLength(), "cost");
  auto choice = i32(o.Get("choice"), "choice");
  const size_t n = choice.ElementLength();
  auto g = f32(o.Get("predicted"), "predicted");
  need_len(env, g.ElementLength(), n * m, "predicted", "n x m");
  check_finite(env, g.Data(), g.ElementLength(), "predicted");
  Pool p;
  p.m = m;
  p.k = opt_count(o, "k", 1, 1, 1 << 20);
  p.cost = cost.Data();
  p.lambda = static_cast<float>(number(o.Get("lambda"), "lambda"));
  read_allowed(env, o, p, n, nullptr);
  read_pool_extras(env, o, p, nullptr);
  if (p.psi_logit) throw_range(env, "INVALID_ARGUMENT", "argminSync takes predicted errors, not psiLogit");
  const int32_t* cells = nullptr;
  if (p.evidence) {
    auto c = i32(o.Get("cells"), "cells");
    need_len(env, c.ElementLength(), n, "cells", "choice.length");
    cells = c.Data();
  }
  throw_status(env, argmin_batch(p, g.Data(), n, choice.Data(), threads(info.Env()), cells));
  return env.Undefined();
}

// scoreSync({clusters: Int32Array | membership: Float32Array (+ clusters for evidence), psi, cost, m, k, lambda,
//            allowed?, allowedPerRow?, psiLogit?, slope?, evidence?, resid?, choice, gamma?})
Napi::Value ScoreSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "options", "an object", info[0]);
  Napi::Object o = info[0].As<Napi::Object>();
  const size_t m = count(o.Get("m"), "m", 1, 1 << 20), k = count(o.Get("k"), "k", 1, 1 << 20);
  auto psi = f32(o.Get("psi"), "psi");
  auto cost = f32(o.Get("cost"), "cost");
  need_len(env, psi.ElementLength(), m * k, "psi", "m x k");
  need_len(env, cost.ElementLength(), m, "cost", "m");
  check_finite(env, psi.Data(), psi.ElementLength(), "psi");
  check_finite(env, cost.Data(), cost.ElementLength(), "cost");
  Pool p;
  p.m = m;
  p.k = k;
  p.psi = psi.Data();
  p.cost = cost.Data();
  p.lambda = static_cast<float>(number(o.Get("lambda"), "lambda"));
  auto choice = i32(o.Get("choice"), "choice");
  const size_t n = choice.ElementLength();
  read_allowed(env, o, p, n, nullptr);
  read_pool_extras(env, o, p, nullptr);
  const float* resid = nullptr;
  Napi::Value rv = o.Get("resid");
  if (!rv.IsUndefined() && !rv.IsNull()) {
    auto r = f32(rv, "resid");
    need_len(env, r.ElementLength(), n, "resid", "choice.length");
    check_finite(env, r.Data(), r.ElementLength(), "resid");
    resid = r.Data();
  }
  float* gamma = nullptr;
  Napi::Value g = o.Get("gamma");
  if (!g.IsUndefined() && !g.IsNull()) {
    auto ga = f32(g, "gamma");
    need_len(env, ga.ElementLength(), n * m, "gamma", "n x m");
    gamma = ga.Data();
  }
  const int32_t* cells = read_cells(env, o, p, n);
  Napi::Value zv = o.Get("membership");
  if (zv.IsUndefined() || zv.IsNull()) {
    auto c = i32(o.Get("clusters"), "clusters");
    need_len(env, c.ElementLength(), n, "clusters", "choice.length");
    throw_status(env, engine(env).run(ScoreHardArgs{&p, c.Data(), n, choice.Data(), gamma, threads(env), resid, cells}));
  } else {
    auto z = f32(zv, "membership");
    need_len(env, z.ElementLength(), n * k, "membership", "n x k");
    check_finite(env, z.Data(), z.ElementLength(), "membership");
    // evidence without cells is read in the nearest centroid's cluster
    const int32_t* ev_cells = cells;
    if (!ev_cells && p.evidence) {
      auto c = i32(o.Get("clusters"), "clusters");
      need_len(env, c.ElementLength(), n, "clusters", "choice.length");
      ev_cells = c.Data();
    }
    throw_status(env, score_batch_soft(p, z.Data(), n, choice.Data(), gamma, threads(info.Env()), resid, ev_cells));
  }
  return env.Undefined();
}

}  // namespace binding
}  // namespace uniroute
