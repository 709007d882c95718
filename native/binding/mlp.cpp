// The learned cluster map: its configuration, forward pass and training.
#include "common.h"
#include "ops.h"

namespace uniroute {
namespace binding {

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
  // a network too large is refused here, before its size is used for anything
  Status st = mlp_validate(c);
  if (!st.ok()) throw_range(env, "INVALID_ARGUMENT", st.message);
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

}  // namespace binding
}  // namespace uniroute
