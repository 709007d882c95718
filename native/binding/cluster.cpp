// Clustering: k-means, nearest-centroid assignment, centroid norms.
#include "common.h"
#include "ops.h"

namespace uniroute {
namespace binding {

// kmeans(points, n, d, k, {seed, maxIter, tol, nInit}) -> Promise<{centroids, assignments, inertia, iterations, reseeded}>
Napi::Value KMeans(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto X = f32(info[0], "points");
  const size_t n = count(info[1], "n", 1, 1e9), d = count(info[2], "d", 1, 1 << 16), k = count(info[3], "k", 1, 1 << 20);
  need_len(env, X.ElementLength(), n * d, "points", "n x d");
  if (k > n) throw_range(env, "INVALID_ARGUMENT", "k (" + std::to_string(k) + ") exceeds the number of points (" + std::to_string(n) + ")");
  check_finite(env, X.Data(), X.ElementLength(), "points");
  KMeansOptions ko;
  if (info.Length() > 4 && info[4].IsObject()) {
    Napi::Object o = info[4].As<Napi::Object>();
    ko.seed = opt_count(o, "seed", 1, 0, 9007199254740991.0);
    ko.max_iter = static_cast<uint32_t>(opt_count(o, "maxIter", 300, 1, 1e6));
    ko.n_init = static_cast<uint32_t>(opt_count(o, "nInit", 1, 1, 1000));
    if (o.Has("tol") && !o.Get("tol").IsUndefined()) ko.tol = number(o.Get("tol"), "tol");
  }
  ko.threads = threads(info.Env());
  auto C = std::make_shared<std::vector<float>>(k * d);
  auto A = std::make_shared<std::vector<int32_t>>(n);
  auto res = std::make_shared<KMeansResult>();
  // the points are copied: a caller may detach their buffer while the work runs
  auto pts = std::make_shared<std::vector<float>>(X.Data(), X.Data() + n * d);
  auto* w = new Worker(
      env, [=] { return kmeans(pts->data(), n, d, k, ko, C->data(), A->data(), *res); },
      [=](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        auto c = Napi::Float32Array::New(e, C->size());
        std::copy(C->begin(), C->end(), c.Data());
        auto a = Napi::Int32Array::New(e, A->size());
        std::copy(A->begin(), A->end(), a.Data());
        r.Set("centroids", c);
        r.Set("assignments", a);
        r.Set("inertia", Napi::Number::New(e, res->inertia));
        r.Set("iterations", Napi::Number::New(e, res->iterations));
        r.Set("reseeded", Napi::Number::New(e, res->reseeded));
        return r;
      });
  w->Queue();
  return w->promise();
}

// assignSync(points, n, d, centroids, k, outIndex, outDistance|null)
Napi::Value AssignSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto X = f32(info[0], "points");
  const size_t n = count(info[1], "n", 0, 1e9), d = count(info[2], "d", 1, 1 << 16);
  auto C = f32(info[3], "centroids");
  const size_t k = count(info[4], "k", 1, 1 << 20);
  auto idx = i32(info[5], "outIndex");
  need_len(env, X.ElementLength(), n * d, "points", "n x d");
  need_len(env, C.ElementLength(), k * d, "centroids", "k x d");
  need_len(env, idx.ElementLength(), n, "outIndex", "n");
  float* dist = nullptr;
  if (info.Length() > 6 && !info[6].IsUndefined() && !info[6].IsNull()) {
    auto da = f32(info[6], "outDistance");
    need_len(env, da.ElementLength(), n, "outDistance", "n");
    dist = da.Data();
  }
  check_finite(env, X.Data(), X.ElementLength(), "points");
  check_finite(env, C.Data(), C.ElementLength(), "centroids");
  throw_status(env, engine(env).run(AssignArgs{X.Data(), n, d, C.Data(), k, idx.Data(), dist, threads(env)}));
  return env.Undefined();
}

// centroidNorms(centroids: Float32Array (k x d), k, d) -> Float32Array (k): the squared norms the distance
// kernels use, computed by the same code, for a router to keep and pass back (centroidNorms / evidenceNorms).
Napi::Value CentroidNorms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto C = f32(info[0], "centroids");
  const size_t k = count(info[1], "k", 1, 1 << 20), d = count(info[2], "d", 1, 1 << 16);
  need_len(env, C.ElementLength(), k * d, "centroids", "k x d");
  check_finite(env, C.Data(), C.ElementLength(), "centroids");
  const std::vector<float> cn = centroid_norms(C.Data(), k, d);
  auto out = Napi::Float32Array::New(env, k);
  std::memcpy(out.Data(), cn.data(), k * sizeof(float));
  return out;
}

}  // namespace binding
}  // namespace uniroute
