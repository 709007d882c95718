// The only N-API code: converts and checks arguments, runs the core, maps statuses to JS errors with a `code`.
#include <napi.h>

#include <atomic>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../core/assign.h"
#include "../core/backend.h"
#include "../core/embed.h"
#include "../core/kmeans.h"
#include "../core/mlp.h"
#include "../core/route.h"
#include "../core/score.h"
#include "../cuda/backend.h"

using namespace uniroute;

namespace {

// Per addon instance (each worker thread that loads the addon has its own): the backend registry and dispatcher,
// the selected backend and the thread count.
Engine& engine(Napi::Env env) { return *env.GetInstanceData<Engine>(); }

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& msg, const char* kind = "Error") {
  Napi::Error e;
  if (std::string(kind) == "TypeError")
    e = Napi::TypeError::New(env, msg);
  else if (std::string(kind) == "RangeError")
    e = Napi::RangeError::New(env, msg);
  else
    e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

const char* status_code(const Status& s) {
  switch (s.code) {
    case Code::InvalidArgument: return "INVALID_ARGUMENT";
    case Code::OutOfMemory: return "OUT_OF_MEMORY";
    case Code::DeviceLost: return "DEVICE_LOST";
    default: return "INTERNAL";
  }
}

[[noreturn]] void throw_type(Napi::Env env, const std::string& name, const std::string& expected, Napi::Value v) {
  std::string got = v.IsUndefined() ? "undefined" : v.IsNull() ? "null" : v.IsArray() ? "an array"
                  : v.IsTypedArray() ? "another typed array" : v.IsString() ? "a string" : v.IsNumber() ? "a number"
                  : "a value of another type";
  throw make_error(env, "INVALID_ARGUMENT", "Expected " + expected + " for `" + name + "` but received " + got, "TypeError");
}

[[noreturn]] void throw_range(Napi::Env env, const std::string& code, const std::string& msg) {
  throw make_error(env, code, msg, "RangeError");
}

template <typename T, napi_typedarray_type TT>
Napi::TypedArrayOf<T> typed(Napi::Value v, const std::string& name, const char* tname) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TT) throw_type(v.Env(), name, tname, v);
  return v.As<Napi::TypedArrayOf<T>>();
}
Napi::Float32Array f32(Napi::Value v, const std::string& n) { return typed<float, napi_float32_array>(v, n, "a Float32Array"); }
Napi::Int32Array i32(Napi::Value v, const std::string& n) { return typed<int32_t, napi_int32_array>(v, n, "an Int32Array"); }
Napi::Int8Array i8(Napi::Value v, const std::string& n) { return typed<int8_t, napi_int8_array>(v, n, "an Int8Array"); }
Napi::Uint8Array u8(Napi::Value v, const std::string& n) { return typed<uint8_t, napi_uint8_array>(v, n, "a Uint8Array"); }

size_t count(Napi::Value v, const std::string& name, double lo, double hi) {
  if (!v.IsNumber()) throw_type(v.Env(), name, "a whole number", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_range(v.Env(), "INVALID_ARGUMENT", "Expected a whole number in [" + std::to_string(static_cast<int64_t>(lo)) +
                                                  ", " + std::to_string(static_cast<int64_t>(hi)) + "] for `" + name +
                                                  "` but received " + std::to_string(d));
  return static_cast<size_t>(d);
}

double number(Napi::Value v, const std::string& name) {
  if (!v.IsNumber()) throw_type(v.Env(), name, "a number", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_range(v.Env(), "NON_FINITE", "`" + name + "` must be finite");
  return d;
}

size_t opt_count(Napi::Object o, const char* key, size_t dflt, double lo, double hi) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? dflt : count(v, key, lo, hi);
}

void need_len(Napi::Env env, size_t got, size_t want, const std::string& name, const std::string& shape) {
  if (got != want)
    throw_range(env, "DIMENSION_MISMATCH", "`" + name + "` has " + std::to_string(got) + " elements but " + shape +
                                               " needs " + std::to_string(want));
}

void check_finite(Napi::Env env, const float* p, size_t n, const char* name) {
  // branch-free over the exponent bits (all ones = Inf or NaN), so that it vectorises: these checks run on every
  // call, over the centroids too; the index is looked for only when something is wrong
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, p + i, sizeof b);
    bad |= static_cast<uint32_t>((b & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i]))
      throw_range(env, "NON_FINITE", std::string("`") + name + "` has a non-finite value at index " + std::to_string(i));
}

// Async calls never touch the caller's buffers while they run: a caller may detach (transfer) an ArrayBuffer while
// the work is queued or running, which frees or moves its memory under the engine. `Staged` copies every typed array
// a job uses into memory the job owns, remaps the job's pointers onto the copies, and, when the work has ended, copies
// the outputs back on the JS thread, after checking that each output buffer is still attached and as long.
class Staged {
 public:
  // Copies each typed array among `vals` (other values are ignored; an array given twice is copied once).
  void stage(const std::vector<Napi::Value>& vals) {
    for (const Napi::Value& v : vals) {
      if (!v.IsTypedArray()) continue;
      Napi::TypedArray a = v.As<Napi::TypedArray>();
      const char* data = static_cast<const char*>(a.ArrayBuffer().Data()) + a.ByteOffset();
      const size_t bytes = a.ByteLength();
      bool seen = false;
      for (const Copy& c : copies_) seen |= c.src == data && c.bytes == bytes;
      if (seen || bytes == 0) continue;
      Copy c;
      c.src = data;
      c.bytes = bytes;
      c.buf.reset(new char[bytes]);  // std::bad_alloc becomes a JS error (NODE_ADDON_API_CPP_EXCEPTIONS_ALL)
      std::memcpy(c.buf.get(), data, bytes);
      c.ref = Napi::Persistent(a.As<Napi::Object>());
      copies_.push_back(std::move(c));
    }
  }
  // p pointed at `count` elements inside a staged array: it now points at the same place in its copy. Where arrays
  // overlap (one a subarray of another), the copy that holds all `count` elements is taken. `output`: copy it back
  // at the end.
  template <typename T>
  void remap(T*& p, size_t count, bool output = false) {
    if (!p || count == 0) return;
    const char* q = reinterpret_cast<const char*>(p);
    const size_t len = count * sizeof(T);
    for (Copy& c : copies_)
      if (q >= c.src && len <= c.bytes && static_cast<size_t>(q - c.src) <= c.bytes - len) {
        p = reinterpret_cast<T*>(c.buf.get() + (q - c.src));
        c.output |= output;
        return;
      }
    throw std::logic_error("an array of an async call was not staged");
  }
  // Copies the outputs back into their arrays; an array detached or resized meanwhile is an error, never a write.
  void copy_back(Napi::Env env) {
    for (Copy& c : copies_) {
      if (!c.output) continue;
      Napi::TypedArray a = c.ref.Value().As<Napi::TypedArray>();
      bool detached = false;
      napi_is_detached_arraybuffer(env, a.ArrayBuffer(), &detached);
      if (detached || a.ByteLength() != c.bytes || !a.ArrayBuffer().Data())
        throw make_error(env, "DETACHED_BUFFER", "an output array was detached or resized while the work ran; its results are lost");
      std::memcpy(static_cast<char*>(a.ArrayBuffer().Data()) + a.ByteOffset(), c.buf.get(), c.bytes);
    }
  }

 private:
  struct Copy {
    const char* src = nullptr;
    size_t bytes = 0;
    std::unique_ptr<char[]> buf;
    Napi::ObjectReference ref;
    bool output = false;
  };
  std::vector<Copy> copies_;
};

// The allowed-LLM mask: none, one for every row (m) or one per row (n x m, allowedPerRow).
void read_allowed(Napi::Env env, Napi::Object o, Pool& p, size_t n, std::vector<Napi::Value>* keep) {
  Napi::Value al = o.Get("allowed");
  if (al.IsUndefined() || al.IsNull()) return;
  auto a = u8(al, "allowed");
  p.allowed_per_row = o.Get("allowedPerRow").ToBoolean();
  need_len(env, a.ElementLength(), p.allowed_per_row ? n * p.m : p.m, "allowed", p.allowed_per_row ? "n x m" : "m");
  p.allowed = a.Data();
  if (keep) keep->push_back(al);
}

// The optional difficulty and evidence parts of a pool: psiLogit (m x k), slope, evidence (m x k flags).
void read_pool_extras(Napi::Env env, Napi::Object o, Pool& p, std::vector<Napi::Value>* keep) {
  Napi::Value pl = o.Get("psiLogit");
  if (!pl.IsUndefined() && !pl.IsNull()) {
    auto a = f32(pl, "psiLogit");
    need_len(env, a.ElementLength(), p.m * p.k, "psiLogit", "m x k");
    check_finite(env, a.Data(), a.ElementLength(), "psiLogit");
    p.psi_logit = a.Data();
    p.slope = static_cast<float>(number(o.Get("slope"), "slope"));
    if (keep) keep->push_back(pl);
  }
  Napi::Value ev = o.Get("evidence");
  if (!ev.IsUndefined() && !ev.IsNull()) {
    auto a = u8(ev, "evidence");
    p.ke = opt_count(o, "evidenceCells", 0, 0, 1 << 20);
    need_len(env, a.ElementLength(), p.m * p.evidence_stride(), "evidence", p.ke ? "m x evidenceCells" : "m x k");
    p.evidence = a.Data();
    if (keep) keep->push_back(ev);
  }
}

// The prompts' evidence cells for scoring (n), when the pool has evidence cells.
const int32_t* read_cells(Napi::Env env, Napi::Object o, const Pool& p, size_t n) {
  Napi::Value cv = o.Get("cells");
  if (cv.IsUndefined() || cv.IsNull()) {
    if (p.evidence && p.ke) throw_type(env, "cells", "an Int32Array (the pool has evidence cells)", cv);
    return nullptr;
  }
  auto c = i32(cv, "cells");
  need_len(env, c.ElementLength(), n, "cells", "choice.length");
  return c.Data();
}

// An optional output array: null when the key is absent, else checked to hold `want` elements (and kept alive).
template <typename T, napi_typedarray_type TT>
T* opt_out(Napi::Env env, Napi::Object o, const char* key, size_t want, const std::string& shape, const char* tname,
           std::vector<Napi::Value>& keep) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  auto a = typed<T, TT>(v, key, tname);
  need_len(env, a.ElementLength(), want, key, shape);
  keep.push_back(v);
  return a.Data();
}

// The parts of a routing call after the embedding, shared by the text and the vector routes: centroids, the pool
// (Ψ, costs, λ, masks, slope, evidence), the difficulty model, the evidence cells, and the output arrays (n rows).
struct RouteParts {
  const float* centroids = nullptr;
  const float* centroid_norms = nullptr;
  Pool pool;
  RouteOutputs out;
  Difficulty diff;
  bool has_diff = false;
  EvidenceCells cells;
};
RouteParts read_route_parts(Napi::Env env, Napi::Object o, size_t n, size_t D, std::vector<Napi::Value>& keep) {
  RouteParts p;
  const size_t k = count(o.Get("k"), "k", 1, 1 << 20), m = count(o.Get("m"), "m", 1, 1 << 20);
  auto C = f32(o.Get("centroids"), "centroids");
  auto psi = f32(o.Get("psi"), "psi");
  auto cost = f32(o.Get("cost"), "cost");
  need_len(env, C.ElementLength(), k * D, "centroids", "k x dim");
  need_len(env, psi.ElementLength(), m * k, "psi", "m x k");
  need_len(env, cost.ElementLength(), m, "cost", "m");
  check_finite(env, C.Data(), C.ElementLength(), "centroids");
  check_finite(env, psi.Data(), psi.ElementLength(), "psi");
  check_finite(env, cost.Data(), cost.ElementLength(), "cost");
  p.centroids = C.Data();
  // optional squared norms of the centroids, kept by the router (computing them is most of a one-prompt call)
  auto norms = [&](const char* key, size_t len, const char* what) -> const float* {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    auto a = f32(v, key);
    need_len(env, a.ElementLength(), len, key, what);
    check_finite(env, a.Data(), a.ElementLength(), key);
    for (size_t i = 0; i < len; ++i)
      if (a.Data()[i] < 0.0f) throw_range(env, "INVALID_ARGUMENT", std::string("`") + key + "` has a negative value");
    keep.push_back(v);
    return a.Data();
  };
  p.centroid_norms = norms("centroidNorms", k, "k");
  p.pool.m = m;
  p.pool.k = k;
  p.pool.psi = psi.Data();
  p.pool.cost = cost.Data();
  p.pool.lambda = static_cast<float>(number(o.Get("lambda"), "lambda"));
  read_allowed(env, o, p.pool, n, &keep);
  read_pool_extras(env, o, p.pool, &keep);
  if (p.pool.psi_logit) {
    Napi::Value dv = o.Get("difficulty");
    if (!dv.IsObject()) throw_type(env, "difficulty", "an object {w, w0, mu} (psiLogit needs it)", dv);
    Napi::Object d = dv.As<Napi::Object>();
    auto w = f32(d.Get("w"), "difficulty.w");
    auto mu = f32(d.Get("mu"), "difficulty.mu");
    need_len(env, w.ElementLength(), D, "difficulty.w", "dim");
    need_len(env, mu.ElementLength(), k, "difficulty.mu", "k");
    check_finite(env, w.Data(), w.ElementLength(), "difficulty.w");
    check_finite(env, mu.Data(), mu.ElementLength(), "difficulty.mu");
    p.diff.w = w.Data();
    p.diff.mu = mu.Data();
    p.diff.w0 = static_cast<float>(number(d.Get("w0"), "difficulty.w0"));
    p.has_diff = true;
    keep.push_back(dv);
    keep.push_back(d.Get("w"));
    keep.push_back(d.Get("mu"));
  }
  Napi::Value ecv = o.Get("evidenceCentroids");
  if (!ecv.IsUndefined() && !ecv.IsNull()) {
    const size_t ke = count(o.Get("evidenceCells"), "evidenceCells", 1, 1 << 20);
    if (p.pool.evidence && p.pool.ke != ke) throw_range(env, "DIMENSION_MISMATCH", "`evidence` and `evidenceCentroids` disagree on the number of cells");
    auto ec = f32(ecv, "evidenceCentroids");
    need_len(env, ec.ElementLength(), ke * D, "evidenceCentroids", "evidenceCells x dim");
    check_finite(env, ec.Data(), ec.ElementLength(), "evidenceCentroids");
    p.cells.centroids = ec.Data();
    p.cells.ke = ke;
    p.cells.norms = norms("evidenceNorms", ke, "evidenceCells");
    auto st = i32(o.Get("evidenceStart"), "evidenceStart");
    need_len(env, st.ElementLength(), k + 1, "evidenceStart", "k + 1");
    p.cells.start = st.Data();
    keep.push_back(o.Get("evidenceStart"));
    keep.push_back(ecv);
    p.out.cell = opt_out<int32_t, napi_int32_array>(env, o, "cellOut", n, "rows", "an Int32Array", keep);
  } else if (p.pool.evidence && p.pool.ke) {
    throw_type(env, "evidenceCentroids", "a Float32Array (the pool has evidence cells)", ecv);
  }
  auto choice = i32(o.Get("choice"), "choice");
  auto cluster = i32(o.Get("cluster"), "cluster");
  auto dist = f32(o.Get("distance"), "distance");
  need_len(env, choice.ElementLength(), n, "choice", "rows");
  need_len(env, cluster.ElementLength(), n, "cluster", "rows");
  need_len(env, dist.ElementLength(), n, "distance", "rows");
  p.out.choice = choice.Data();
  p.out.cluster = cluster.Data();
  p.out.distance = dist.Data();
  p.out.gamma = opt_out<float, napi_float32_array>(env, o, "gamma", n * m, "rows x m", "a Float32Array", keep);
  p.out.chosen = opt_out<float, napi_float32_array>(env, o, "chosen", n, "rows", "a Float32Array", keep);
  for (const char* key : {"centroids", "psi", "cost", "choice", "cluster", "distance"}) keep.push_back(o.Get(key));
  return p;
}

// An async routing job reads and writes copies (see Staged).
void stage_route_parts(Staged& st, const std::vector<Napi::Value>& keep, RouteParts& p, size_t n, size_t D) {
  const size_t m = p.pool.m, k = p.pool.k, ke = p.cells.ke;
  st.stage(keep);
  st.remap(p.centroids, k * D);
  st.remap(p.centroid_norms, k);
  st.remap(p.pool.psi, m * k);
  st.remap(p.pool.cost, m);
  st.remap(p.pool.allowed, p.pool.allowed_per_row ? n * m : m);
  st.remap(p.pool.psi_logit, m * k);
  st.remap(p.pool.evidence, m * p.pool.evidence_stride());
  st.remap(p.diff.w, D);
  st.remap(p.diff.mu, k);
  st.remap(p.cells.centroids, ke * D);
  st.remap(p.cells.start, k + 1);
  st.remap(p.cells.norms, ke);
  st.remap(p.out.choice, n, true);
  st.remap(p.out.cluster, n, true);
  st.remap(p.out.distance, n, true);
  st.remap(p.out.gamma, n * m, true);
  st.remap(p.out.cell, n, true);
  st.remap(p.out.chosen, n, true);
}

// UTF-8 copies of a JS string array in one arena.
struct Texts {
  std::string arena;
  std::vector<size_t> offsets;  // n + 1
  std::vector<TextRef> refs;
  void load(Napi::Value v, const std::string& name) {
    Napi::Env env = v.Env();
    if (!v.IsArray()) throw_type(env, name, "an array of strings", v);
    Napi::Array a = v.As<Napi::Array>();
    const uint32_t n = a.Length();
    std::vector<napi_value> vals(n);
    offsets.assign(n + 1, 0);
    for (uint32_t i = 0; i < n; ++i) {
      Napi::Value s = a.Get(i);
      if (!s.IsString()) throw_type(env, name + "[" + std::to_string(i) + "]", "a string", s);
      vals[i] = s;
      size_t len = 0;
      napi_get_value_string_utf8(env, s, nullptr, 0, &len);
      offsets[i + 1] = offsets[i] + len;
    }
    arena.resize(offsets[n] + 1);
    for (uint32_t i = 0; i < n; ++i) {
      size_t len = offsets[i + 1] - offsets[i], wrote = 0;
      napi_get_value_string_utf8(env, vals[i], &arena[offsets[i]], len + 1, &wrote);
    }
    refs.resize(n);
    for (uint32_t i = 0; i < n; ++i) refs[i] = {arena.data() + offsets[i], offsets[i + 1] - offsets[i]};
  }
  size_t size() const { return refs.size(); }
};

// Promise-returning worker; keeps the JS buffers it reads and writes alive until it settles.
class Worker : public Napi::AsyncWorker {
 public:
  Worker(Napi::Env env, std::function<Status()> work, std::function<Napi::Value(Napi::Env)> result = nullptr)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        result_(std::move(result)) {}
  void keep(Napi::Value v) {
    if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  // The job's staged copies: outputs are copied back before the promise resolves.
  void staged(std::shared_ptr<Staged> s) { staged_ = std::move(s); }
  void Execute() override {
    try {
      status_ = work_();
    } catch (const std::bad_alloc&) {
      status_ = Status::Oom("out of memory");
    } catch (const std::exception& e) {
      status_ = Status::Internal(e.what());
    }
    if (!status_.ok()) SetError(status_.message);
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      if (staged_) staged_->copy_back(env);
      deferred_.Resolve(result_ ? result_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (const std::bad_alloc&) {
      deferred_.Reject(make_error(env, "OUT_OF_MEMORY", "out of memory").Value());
    }
  }
  void OnError(const Napi::Error&) override {
    deferred_.Reject(make_error(Env(), status_code(status_), status_.message).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Status()> work_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::vector<Napi::ObjectReference> refs_;
  std::shared_ptr<Staged> staged_;
  Status status_;
};

void throw_status(Napi::Env env, const Status& s) {
  if (!s.ok()) throw make_error(env, status_code(s), s.message);
}

int threads(Napi::Env env) { return engine(env).threads(); }

// ---------------------------------------------------------------------------------------------------------------

class EmbedderWrap : public Napi::ObjectWrap<EmbedderWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Embedder",
                       {InstanceMethod("embedSync", &EmbedderWrap::EmbedSync),
                        InstanceMethod("embed", &EmbedderWrap::EmbedAsync),
                        InstanceMethod("routeSync", &EmbedderWrap::RouteSync),
                        InstanceMethod("route", &EmbedderWrap::RouteAsync),
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

MlpConfig mlp_config(Napi::Env env, Napi::Value v);

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
    job->map = std::make_shared<MlpConfig>(mlp_config(env, mo.Get("config")));
    Status vs = mlp_validate(*job->map);
    if (!vs.ok()) throw_range(env, "INVALID_ARGUMENT", vs.message);
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
  job->a.centroids = job->centroids;
  job->a.centroid_norms = job->centroid_norms;
  job->a.diff = job->has_diff ? &job->diff : nullptr;
  job->a.cells = job->cells.centroids ? &job->cells : nullptr;
  const int t = threads(info.Env());
  if (o.Get("sync").ToBoolean()) {  // small batches: on the calling thread
    throw_status(env, route_vectors(job->a, job->pool, job->out, t));
    return env.Undefined();
  }
  auto st = std::make_shared<Staged>();
  stage_route_parts(*st, keep, *job, n, D);
  st->remap(job->a.X, n * D);
  if (job->map) st->remap(job->a.map_params, job->map->param_count());
  job->a.centroids = job->centroids;
  job->a.centroid_norms = job->centroid_norms;
  job->a.diff = job->has_diff ? &job->diff : nullptr;
  job->a.cells = job->cells.centroids ? &job->cells : nullptr;
  auto* w = new Worker(env, [job, t, st] { return route_vectors(job->a, job->pool, job->out, t); });
  w->staged(st);
  w->Queue();
  return w->promise();
}

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

MlpConfig mlp_config(Napi::Env env, Napi::Value v) {
  if (!v.IsObject()) throw_type(env, "config", "an object", v);
  Napi::Object o = v.As<Napi::Object>();
  MlpConfig c;
  c.in = static_cast<uint32_t>(count(o.Get("in"), "config.in", 1, 65536));
  c.out = static_cast<uint32_t>(count(o.Get("out"), "config.out", 1, 65536));
  Napi::Value h = o.Get("hidden");
  if (!h.IsArray()) throw_type(env, "config.hidden", "an array of layer sizes", h);
  Napi::Array ha = h.As<Napi::Array>();
  if (ha.Length() > 8) throw_range(env, "INVALID_ARGUMENT", "at most 8 hidden layers");
  for (uint32_t i = 0; i < ha.Length(); ++i) c.hidden.push_back(static_cast<uint32_t>(count(ha.Get(i), "config.hidden[]", 1, 65536)));
  c.batchnorm = o.Get("batchnorm").IsUndefined() ? true : o.Get("batchnorm").ToBoolean().Value();
  c.input_bn = o.Get("inputBn").IsUndefined() ? true : o.Get("inputBn").ToBoolean().Value();
  Napi::Value head = o.Get("head");
  std::string hs = head.IsString() ? head.As<Napi::String>().Utf8Value() : "mixture";
  if (hs != "mixture" && hs != "sigmoid") throw_range(env, "INVALID_ARGUMENT", "config.head must be \"mixture\" or \"sigmoid\"");
  c.head = hs == "mixture" ? Head::Mixture : Head::Sigmoid;
  return c;
}

// mlpForward(params, config, X, n, out)
Napi::Value MlpForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto P = f32(info[0], "params");
  MlpConfig c = mlp_config(env, info[1]);
  auto X = f32(info[2], "points");
  const size_t n = count(info[3], "n", 0, 1e9);
  auto out = f32(info[4], "out");
  need_len(env, P.ElementLength(), c.param_count(), "params", "the network's parameter count");
  need_len(env, X.ElementLength(), n * c.in, "points", "n x in");
  need_len(env, out.ElementLength(), n * c.out, "out", "n x out");
  check_finite(env, X.Data(), X.ElementLength(), "points");
  throw_status(env, mlp_forward(c, P.Data(), X.Data(), n, out.Data(), threads(info.Env())));
  return env.Undefined();
}

// trainMlp(X, n, Y, M, config, {psi?, valX?, valY?, nv?, lr, batch, epochs, patience, weightDecay, seed, init?})
Napi::Value TrainMlp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto X = f32(info[0], "points");
  const size_t n = count(info[1], "n", 2, 1e9);
  auto Y = f32(info[2], "labels");
  const size_t M = count(info[3], "m", 1, 1 << 20);
  MlpConfig c = mlp_config(env, info[4]);
  if (!info[5].IsObject()) throw_type(env, "options", "an object", info[5]);
  Napi::Object o = info[5].As<Napi::Object>();
  need_len(env, X.ElementLength(), n * c.in, "points", "n x in");
  need_len(env, Y.ElementLength(), n * M, "labels", "n x m");
  check_finite(env, X.Data(), X.ElementLength(), "points");
  for (size_t i = 0; i < Y.ElementLength(); ++i) {
    float y = Y.Data()[i];
    if (!std::isnan(y) && !(y >= 0.0f && y <= 1.0f)) throw_range(env, "INVALID_ARGUMENT", "`labels` must be in [0, 1] or NaN (index " + std::to_string(i) + ")");
  }
  const float* psi = nullptr;
  std::vector<Napi::Value> keep = {info[0], info[2]};
  if (c.head == Head::Mixture) {
    auto p = f32(o.Get("psi"), "psi");
    need_len(env, p.ElementLength(), M * c.out, "psi", "m x out");
    check_finite(env, p.Data(), p.ElementLength(), "psi");
    psi = p.Data();
    keep.push_back(o.Get("psi"));
  } else if (c.out != M) {
    throw_range(env, "DIMENSION_MISMATCH", "the sigmoid head needs one output per LLM (out = m)");
  }
  const float* Xv = nullptr;
  const float* Yv = nullptr;
  size_t nv = 0;
  if (!o.Get("valX").IsUndefined()) {
    auto vx = f32(o.Get("valX"), "valX");
    auto vy = f32(o.Get("valY"), "valY");
    nv = vx.ElementLength() / c.in;
    need_len(env, vx.ElementLength(), nv * c.in, "valX", "nv x in");
    need_len(env, vy.ElementLength(), nv * M, "valY", "nv x m");
    check_finite(env, vx.Data(), vx.ElementLength(), "valX");
    Xv = vx.Data();
    Yv = vy.Data();
    keep.push_back(o.Get("valX"));
    keep.push_back(o.Get("valY"));
  }
  MlpTrainOptions to;
  if (!o.Get("lr").IsUndefined()) to.lr = static_cast<float>(number(o.Get("lr"), "lr"));
  to.batch = static_cast<uint32_t>(opt_count(o, "batch", 64, 2, 1e6));
  to.epochs = static_cast<uint32_t>(opt_count(o, "epochs", 5, 1, 1e5));
  to.patience = static_cast<uint32_t>(opt_count(o, "patience", 2, 1, 1e5));
  if (!o.Get("weightDecay").IsUndefined()) to.weight_decay = static_cast<float>(number(o.Get("weightDecay"), "weightDecay"));
  to.seed = opt_count(o, "seed", 1, 0, 9007199254740991.0);
  auto P = std::make_shared<std::vector<float>>();
  auto rep = std::make_shared<MlpTrainReport>();
  const float* xp = X.Data();
  const float* yp = Y.Data();
  auto st = std::make_shared<Staged>();  // inputs copied: a caller may detach their buffers while training runs
  st->stage(keep);
  st->remap(xp, n * c.in);
  st->remap(yp, n * M);
  st->remap(psi, M * c.out);
  st->remap(Xv, nv * c.in);
  st->remap(Yv, nv * M);
  auto* w = new Worker(
      env, [=] { return mlp_train(c, *P, xp, yp, n, M, psi, Xv, Yv, nv, to, *rep); },
      [=](Napi::Env e) -> Napi::Value {
        Napi::Object r = Napi::Object::New(e);
        auto pa = Napi::Float32Array::New(e, P->size());
        std::copy(P->begin(), P->end(), pa.Data());
        r.Set("params", pa);
        auto tl = Napi::Array::New(e), vl = Napi::Array::New(e);
        for (size_t i = 0; i < rep->train_loss.size(); ++i) tl.Set(static_cast<uint32_t>(i), rep->train_loss[i]);
        for (size_t i = 0; i < rep->val_loss.size(); ++i) vl.Set(static_cast<uint32_t>(i), rep->val_loss[i]);
        r.Set("trainLoss", tl);
        r.Set("valLoss", vl);
        r.Set("bestEpoch", Napi::Number::New(e, rep->best_epoch));
        return r;
      });
  w->staged(st);
  w->Queue();
  return w->promise();
}

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
  return r;
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* eng = new Engine();
  eng->on_disabled([](const std::string& backend, const std::string& why) {
    std::fprintf(stderr, "uniroute: warning: the %s backend failed and is disabled; the CPU runs its work from now on (%s)\n",
                 backend.c_str(), why.c_str());
  });
  env.SetInstanceData<Engine>(eng);  // deleted with the instance (an environment's teardown)
  exports.Set("Embedder", EmbedderWrap::Init(env));
  exports.Set("fitEmbedder", Napi::Function::New(env, FitEmbedder));
  exports.Set("kmeans", Napi::Function::New(env, KMeans));
  exports.Set("assignSync", Napi::Function::New(env, AssignSync));
  exports.Set("scoreSync", Napi::Function::New(env, ScoreSync));
  exports.Set("argminSync", Napi::Function::New(env, ArgminSync));
  exports.Set("centroidNorms", Napi::Function::New(env, CentroidNorms));
  exports.Set("routeVectors", Napi::Function::New(env, RouteVectors));
  exports.Set("trainMlp", Napi::Function::New(env, TrainMlp));
  exports.Set("mlpForward", Napi::Function::New(env, MlpForward));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("setBackend", Napi::Function::New(env, SetBackend));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace

NODE_API_MODULE(uniroute, Init)
