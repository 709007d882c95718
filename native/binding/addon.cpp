// The only N-API code is under native/binding: this file registers the op families (one file each: embed, route,
// cluster, mlp, backend; shared argument checks and the async worker in common.h) and creates the per-instance
// engine. Every C++ exception becomes a JS error (NODE_ADDON_API_CPP_EXCEPTIONS_ALL), with a `code`.
#include <cstdio>

#include "common.h"
#include "ops.h"

namespace uniroute {
namespace binding {
namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* eng = new Engine();
  eng->on_disabled([](const std::string& backend, const std::string& why) {
    std::fprintf(stderr, "uniroute: warning: the %s backend failed and is disabled; the CPU runs its work from now on (%s)\n",
                 backend.c_str(), why.c_str());
  });
  env.SetInstanceData<Engine>(eng);  // deleted with the instance (an environment's teardown)
  exports.Set("Embedder", EmbedderClass(env));
  exports.Set("fitEmbedder", Napi::Function::New(env, FitEmbedder));
  exports.Set("kmeans", Napi::Function::New(env, KMeans));
  exports.Set("assignSync", Napi::Function::New(env, AssignSync));
  exports.Set("scoreSync", Napi::Function::New(env, ScoreSync));
  exports.Set("argminSync", Napi::Function::New(env, ArgminSync));
  exports.Set("centroidNorms", Napi::Function::New(env, CentroidNorms));
  exports.Set("routeVectors", Napi::Function::New(env, RouteVectors));
  exports.Set("routeModel", Napi::Function::New(env, MakeRouteModel));
  exports.Set("trainMlp", Napi::Function::New(env, TrainMlp));
  exports.Set("mlpForward", Napi::Function::New(env, MlpForward));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("setBackend", Napi::Function::New(env, SetBackend));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace
}  // namespace binding
}  // namespace uniroute

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return uniroute::binding::Init(env, exports); }

NODE_API_MODULE(uniroute, InitAddon)
