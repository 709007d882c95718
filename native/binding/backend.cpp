// The backend and thread settings of this addon instance, and what the CUDA probe found.
#include "common.h"
#include <cstdio>

#include "ops.h"
#include "../core/isa.h"

namespace uniroute {
namespace binding {

Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::DeviceInfo& d = cuda::probe();
  Napi::Object c = Napi::Object::New(env);
  c.Set("compiled", Napi::Boolean::New(env, d.compiled));
  c.Set("available", Napi::Boolean::New(env, d.available));
  c.Set("reason", d.available ? env.Null() : Napi::String::New(env, d.reason));
  if (d.available) {
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("name", Napi::String::New(env, d.name));
    dev.Set("computeCapability", Napi::String::New(env, std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor)));
    dev.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(d.memory_bytes)));
    c.Set("device", dev);
  } else {
    c.Set("device", env.Null());
  }
  c.Set("runtimeVersion", Napi::Number::New(env, d.runtime_version));
  c.Set("driverVersion", Napi::Number::New(env, d.driver_version));
  Engine& eng = engine(env);
  Napi::Object r = Napi::Object::New(env);
  r.Set("backend", Napi::String::New(env, eng.selected()));
  r.Set("cuda", c);
  Napi::Array names = Napi::Array::New(env);
  for (const std::string& n : eng.names()) names.Set(names.Length(), Napi::String::New(env, n));
  r.Set("backends", names);
  // calls a failing backend handed to the CPU, and why the last one failed
  r.Set("fallbacks", Napi::Number::New(env, static_cast<double>(eng.fallbacks())));
  const std::string lf = eng.last_failure();
  r.Set("lastFailure", lf.empty() ? env.Null() : Napi::String::New(env, lf));
  // the CPU kernels' instruction set (process-wide: it describes the CPU)
  Napi::Object isa = Napi::Object::New(env);
  isa.Set("active", Napi::String::New(env, isa_name(isa_active())));
  isa.Set("forced", Napi::Boolean::New(env, isa_forced()));
  Napi::Array sup = Napi::Array::New(env);
  for (Isa i : isa_supported_list()) sup.Set(sup.Length(), Napi::String::New(env, isa_name(i)));
  isa.Set("supported", sup);
  isa.Set("cpuFeatures", Napi::String::New(env, isa_cpu_features()));
  r.Set("isa", isa);
  return r;
}

// setIsa("auto" | "baseline" | "avx2" | "avx512") -> the set now in use
Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_type(env, "isa", "\"auto\", \"baseline\", \"avx2\" or \"avx512\"", info[0]);
  Status st = isa_select(info[0].As<Napi::String>().Utf8Value());
  if (st.code == Code::InvalidArgument) throw_range(env, "INVALID_ARGUMENT", st.message);
  if (!st.ok()) throw make_error(env, "BACKEND_UNAVAILABLE", st.message);
  return Napi::String::New(env, isa_name(isa_active()));
}

// setBackend("auto" | "cpu" | "cuda") -> the backend now in use
Napi::Value SetBackend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_type(env, "backend", "\"auto\", \"cpu\" or \"cuda\"", info[0]);
  const std::string b = info[0].As<Napi::String>().Utf8Value();
  Engine& eng = engine(env);
  bool known = b == "auto";
  for (const std::string& n : eng.names()) known |= n == b;
  if (!known) throw_range(env, "INVALID_ARGUMENT", "Expected \"auto\", \"cpu\" or \"cuda\" for `backend` but received \"" + b + "\"");
  Status st = eng.select(b);
  if (!st.ok()) throw make_error(env, "BACKEND_UNAVAILABLE", st.message);
  return Napi::String::New(env, eng.selected());
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  engine(info.Env()).set_threads(static_cast<int>(count(info[0], "threads", 0, 256)));
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  int t = engine(info.Env()).threads();
  return Napi::Number::New(info.Env(), t == 0 ? default_threads() : t);
}

}  // namespace binding
}  // namespace uniroute
