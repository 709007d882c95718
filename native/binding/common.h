// The binding's shared parts: errors with a `code`, argument readers that check every size and type, the staged
// copies of async calls, the async worker, and the per-instance engine. Included by each op family's file.
#pragma once
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

namespace uniroute {
namespace binding {

// Per addon instance (each worker thread that loads the addon has its own): the backend registry and dispatcher,
// the selected backend and the thread count.
inline Engine& engine(Napi::Env env) { return *env.GetInstanceData<Engine>(); }

inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& msg, const char* kind = "Error") {
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

inline const char* status_code(const Status& s) {
  switch (s.code) {
    case Code::InvalidArgument: return "INVALID_ARGUMENT";
    case Code::OutOfMemory: return "OUT_OF_MEMORY";
    case Code::DeviceLost: return "DEVICE_LOST";
    case Code::Unsupported: return "BACKEND_UNAVAILABLE";
    default: return "INTERNAL";
  }
}

[[noreturn]] inline void throw_type(Napi::Env env, const std::string& name, const std::string& expected, Napi::Value v) {
  std::string got = v.IsUndefined() ? "undefined" : v.IsNull() ? "null" : v.IsArray() ? "an array"
                  : v.IsTypedArray() ? "another typed array" : v.IsString() ? "a string" : v.IsNumber() ? "a number"
                  : "a value of another type";
  throw make_error(env, "INVALID_ARGUMENT", "Expected " + expected + " for `" + name + "` but received " + got, "TypeError");
}

[[noreturn]] inline void throw_range(Napi::Env env, const std::string& code, const std::string& msg) {
  throw make_error(env, code, msg, "RangeError");
}

template <typename T, napi_typedarray_type TT>
Napi::TypedArrayOf<T> typed(Napi::Value v, const std::string& name, const char* tname) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TT) throw_type(v.Env(), name, tname, v);
  return v.As<Napi::TypedArrayOf<T>>();
}
inline Napi::Float32Array f32(Napi::Value v, const std::string& n) { return typed<float, napi_float32_array>(v, n, "a Float32Array"); }
inline Napi::Int32Array i32(Napi::Value v, const std::string& n) { return typed<int32_t, napi_int32_array>(v, n, "an Int32Array"); }
inline Napi::Int8Array i8(Napi::Value v, const std::string& n) { return typed<int8_t, napi_int8_array>(v, n, "an Int8Array"); }
inline Napi::Uint8Array u8(Napi::Value v, const std::string& n) { return typed<uint8_t, napi_uint8_array>(v, n, "a Uint8Array"); }

inline size_t count(Napi::Value v, const std::string& name, double lo, double hi) {
  if (!v.IsNumber()) throw_type(v.Env(), name, "a whole number", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_range(v.Env(), "INVALID_ARGUMENT", "Expected a whole number in [" + std::to_string(static_cast<int64_t>(lo)) +
                                                  ", " + std::to_string(static_cast<int64_t>(hi)) + "] for `" + name +
                                                  "` but received " + std::to_string(d));
  return static_cast<size_t>(d);
}

inline double number(Napi::Value v, const std::string& name) {
  if (!v.IsNumber()) throw_type(v.Env(), name, "a number", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throw_range(v.Env(), "NON_FINITE", "`" + name + "` must be finite");
  return d;
}

inline size_t opt_count(Napi::Object o, const char* key, size_t dflt, double lo, double hi) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? dflt : count(v, key, lo, hi);
}

inline void need_len(Napi::Env env, size_t got, size_t want, const std::string& name, const std::string& shape) {
  if (got != want)
    throw_range(env, "DIMENSION_MISMATCH", "`" + name + "` has " + std::to_string(got) + " elements but " + shape +
                                               " needs " + std::to_string(want));
}

inline void check_finite(Napi::Env env, const float* p, size_t n, const char* name) {
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
inline void read_allowed(Napi::Env env, Napi::Object o, Pool& p, size_t n, std::vector<Napi::Value>* keep) {
  Napi::Value al = o.Get("allowed");
  if (al.IsUndefined() || al.IsNull()) return;
  auto a = u8(al, "allowed");
  p.allowed_per_row = o.Get("allowedPerRow").ToBoolean();
  need_len(env, a.ElementLength(), p.allowed_per_row ? n * p.m : p.m, "allowed", p.allowed_per_row ? "n x m" : "m");
  p.allowed = a.Data();
  if (keep) keep->push_back(al);
}

// The optional difficulty and evidence parts of a pool: psiLogit (m x k), slope, evidence (m x k flags).
inline void read_pool_extras(Napi::Env env, Napi::Object o, Pool& p, std::vector<Napi::Value>* keep) {
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
inline const int32_t* read_cells(Napi::Env env, Napi::Object o, const Pool& p, size_t n) {
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

// The same for a positional argument.
template <typename T, napi_typedarray_type TT>
T* opt_arg(Napi::Value v, const char* name, size_t want, const std::string& shape, const char* tname) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  auto a = typed<T, TT>(v, name, tname);
  need_len(v.Env(), a.ElementLength(), want, name, shape);
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
// The fixed parts of a route (a router's model and its pool's snapshot): centroids, their norms, Ψ, costs, the
// difficulty model, the evidence cells. Everything but λ, the masks and the outputs.
inline RouteParts read_route_model(Napi::Env env, Napi::Object o, size_t D, std::vector<Napi::Value>& keep) {
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
  } else if (p.pool.evidence && p.pool.ke) {
    throw_type(env, "evidenceCentroids", "a Float32Array (the pool has evidence cells)", ecv);
  }
  for (const char* key : {"centroids", "psi", "cost"}) keep.push_back(o.Get(key));
  return p;
}

// A route's three outputs every call has, n rows each: the choice, the cluster and its distance.
inline void read_route_outputs(Napi::Env env, RouteParts& p, size_t n, Napi::Value choice_v, Napi::Value cluster_v, Napi::Value dist_v) {
  auto choice = i32(choice_v, "choice");
  auto cluster = i32(cluster_v, "cluster");
  auto dist = f32(dist_v, "distance");
  need_len(env, choice.ElementLength(), n, "choice", "rows");
  need_len(env, cluster.ElementLength(), n, "cluster", "rows");
  need_len(env, dist.ElementLength(), n, "distance", "rows");
  p.out.choice = choice.Data();
  p.out.cluster = cluster.Data();
  p.out.distance = dist.Data();
}

// The per-call parts of a route on n rows: λ, the allowed-LLM mask and the output arrays.
inline void read_route_io(Napi::Env env, Napi::Object o, size_t n, RouteParts& p, std::vector<Napi::Value>& keep) {
  p.pool.lambda = static_cast<float>(number(o.Get("lambda"), "lambda"));
  read_allowed(env, o, p.pool, n, &keep);
  if (p.cells.centroids) p.out.cell = opt_out<int32_t, napi_int32_array>(env, o, "cellOut", n, "rows", "an Int32Array", keep);
  read_route_outputs(env, p, n, o.Get("choice"), o.Get("cluster"), o.Get("distance"));
  p.out.gamma = opt_out<float, napi_float32_array>(env, o, "gamma", n * p.pool.m, "rows x m", "a Float32Array", keep);
  p.out.chosen = opt_out<float, napi_float32_array>(env, o, "chosen", n, "rows", "a Float32Array", keep);
  for (const char* key : {"choice", "cluster", "distance"}) keep.push_back(o.Get(key));
}

inline RouteParts read_route_parts(Napi::Env env, Napi::Object o, size_t n, size_t D, std::vector<Napi::Value>& keep) {
  RouteParts p = read_route_model(env, o, D, keep);
  read_route_io(env, o, n, p, keep);
  return p;
}

// A route's fixed parts checked and copied once (routeModel()): a router keeps one per pool snapshot, and the
// one-prompt route on texts (Embedder.routeModelSync) then reads only λ, the mask and the outputs per call. The
// copies make it immune to later changes of the arrays it was made from.
struct RouteModel {
  size_t dim = 0;
  std::vector<float> centroids, centroid_norms, psi, cost, psi_logit, diff_w, diff_mu, cell_centroids, cell_norms;
  std::vector<int32_t> cell_start;
  std::vector<uint8_t> evidence;
  RouteParts parts;  // pointing into the copies above; λ, the mask and the outputs are unset

  // The bytes of the copies (reported to V8 as external memory, so that its GC weighs a model by its size).
  int64_t bytes() const {
    const size_t f = centroids.size() + centroid_norms.size() + psi.size() + cost.size() + psi_logit.size() + diff_w.size() +
                     diff_mu.size() + cell_centroids.size() + cell_norms.size();
    return static_cast<int64_t>(sizeof(RouteModel) + f * sizeof(float) + cell_start.size() * sizeof(int32_t) + evidence.size());
  }

  RouteModel(const RouteParts& p, size_t D) : dim(D), parts(p) {
    const size_t k = p.pool.k, m = p.pool.m, ke = p.cells.ke;
    parts.centroids = own(centroids, p.centroids, k * D);
    parts.centroid_norms = own(centroid_norms, p.centroid_norms, k);
    parts.pool.psi = own(psi, p.pool.psi, m * k);
    parts.pool.cost = own(cost, p.pool.cost, m);
    parts.pool.psi_logit = own(psi_logit, p.pool.psi_logit, m * k);
    parts.pool.evidence = own(evidence, p.pool.evidence, m * p.pool.evidence_stride());
    parts.pool.lambda = 0.0f;
    parts.pool.allowed = nullptr;
    parts.pool.allowed_per_row = false;
    parts.diff.w = own(diff_w, p.diff.w, D);
    parts.diff.mu = own(diff_mu, p.diff.mu, k);
    parts.cells.centroids = own(cell_centroids, p.cells.centroids, ke * D);
    parts.cells.norms = own(cell_norms, p.cells.norms, ke);
    parts.cells.start = own(cell_start, p.cells.start, k + 1);
    parts.out = RouteOutputs{};
  }

 private:
  template <typename T>
  static const T* own(std::vector<T>& v, const T* src, size_t n) {
    if (!src) return nullptr;
    v.assign(src, src + n);
    return v.data();
  }
};

// The tag that tells a RouteModel's External from any other value (napi_check_object_type_tag).
inline const napi_type_tag kRouteModelTag = {0x7a3c1e5b9d2f4a61ULL, 0xc4e8a2f60b1d3957ULL};

inline RouteModel& route_model(Napi::Value v, const char* name) {
  if (!v.IsExternal() || !v.As<Napi::External<RouteModel>>().CheckTypeTag(&kRouteModelTag))
    throw_type(v.Env(), name, "a route model (routeModel())", v);
  return *v.As<Napi::External<RouteModel>>().Data();
}

// An async routing job reads and writes copies (see Staged).
inline void stage_route_parts(Staged& st, const std::vector<Napi::Value>& keep, RouteParts& p, size_t n, size_t D) {
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

inline void throw_status(Napi::Env env, const Status& s) {
  if (!s.ok()) throw make_error(env, status_code(s), s.message);
}

inline int threads(Napi::Env env) { return engine(env).threads(); }

MlpConfig mlp_config(Napi::Env env, Napi::Value v);

}  // namespace binding
}  // namespace uniroute
