// The op families' entry points, registered by addon.cpp.
#pragma once
#include <napi.h>

namespace uniroute {
namespace binding {

Napi::Function EmbedderClass(Napi::Env env);  // embed.cpp
Napi::Value FitEmbedder(const Napi::CallbackInfo& info);
Napi::Value RouteVectors(const Napi::CallbackInfo& info);  // route.cpp
Napi::Value MakeRouteModel(const Napi::CallbackInfo& info);
Napi::Value ArgminSync(const Napi::CallbackInfo& info);
Napi::Value ScoreSync(const Napi::CallbackInfo& info);
Napi::Value KMeans(const Napi::CallbackInfo& info);  // cluster.cpp
Napi::Value AssignSync(const Napi::CallbackInfo& info);
Napi::Value CentroidNorms(const Napi::CallbackInfo& info);
Napi::Value MlpForward(const Napi::CallbackInfo& info);  // mlp.cpp
Napi::Value TrainMlp(const Napi::CallbackInfo& info);
Napi::Value BackendInfo(const Napi::CallbackInfo& info);  // backend.cpp
Napi::Value SetBackend(const Napi::CallbackInfo& info);
Napi::Value SetIsa(const Napi::CallbackInfo& info);
Napi::Value SetThreads(const Napi::CallbackInfo& info);
Napi::Value GetThreads(const Napi::CallbackInfo& info);

}  // namespace binding
}  // namespace uniroute
