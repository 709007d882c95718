#include "mlp.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace uniroute {

namespace {

constexpr float kBnEps = 1e-5f;
constexpr float kBnMomentum = 0.1f;
constexpr double kProbEps = 1e-6;

// Parameter layout, in order:
//   input BN: gamma[in], beta[in], mean[in], var[in]
//   per hidden layer l: W[h x prev], b[h], then (if batchnorm) gamma[h], beta[h], mean[h], var[h]
//   output: W[out x prev], b[out]
struct Bn {
  size_t gamma, beta, mean, var, dim;
};
struct Lin {
  size_t W, b, in, out;
};
struct Layout {
  bool has_in_bn = false;
  Bn in_bn{};
  std::vector<Lin> lin;  // hidden..., output
  std::vector<Bn> bn;    // per hidden layer (if batchnorm)
  size_t total = 0;
  std::vector<char> trainable;  // per parameter
};

// The offsets of every tensor in the flat parameter vector and its total size (a few entries, whatever the size).
Layout offsets(const MlpConfig& c) {
  Layout L;
  size_t off = 0;
  auto bn = [&](size_t d) {
    Bn b{off, off + d, off + 2 * d, off + 3 * d, d};
    off += 4 * d;
    return b;
  };
  if (c.input_bn) {
    L.has_in_bn = true;
    L.in_bn = bn(c.in);
  }
  size_t prev = c.in;
  for (uint32_t h : c.hidden) {
    L.lin.push_back({off, off + static_cast<size_t>(h) * prev, prev, h});
    off += static_cast<size_t>(h) * prev + h;
    if (c.batchnorm) L.bn.push_back(bn(h));
    prev = h;
  }
  L.lin.push_back({off, off + static_cast<size_t>(c.out) * prev, prev, c.out});
  off += static_cast<size_t>(c.out) * prev + c.out;
  L.total = off;
  return L;
}

// The offsets and the trainable mask (a byte per parameter: running statistics are not trained).
Layout layout(const MlpConfig& c) {
  Layout L = offsets(c);
  L.trainable.assign(L.total, 1);
  auto freeze = [&](const Bn& b) {
    for (size_t i = 0; i < 2 * b.dim; ++i) L.trainable[b.mean + i] = 0;
  };
  if (L.has_in_bn) freeze(L.in_bn);
  for (auto& b : L.bn) freeze(b);
  return L;
}

// Activations of one batch, kept for the backward pass.
struct Cache {
  std::vector<std::vector<float>> a;      // input to each linear layer (after BN/ReLU), n x in_l
  std::vector<std::vector<float>> xhat;   // normalised values of each BN (input BN first if present), n x d
  std::vector<std::vector<float>> invstd; // per BN
  std::vector<std::vector<float>> pre;    // pre-activation after BN (before ReLU) of hidden layers, n x h
  std::vector<float> logits;              // n x out
};

void batchnorm_forward(const float* x, size_t n, size_t d, const float* P, const Bn& b, bool train, float* y,
                       std::vector<float>* xhat, std::vector<float>* invstd, float* run_mean, float* run_var) {
  std::vector<double> mean(d, 0.0), var(d, 0.0);
  if (train) {
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < d; ++j) mean[j] += x[i * d + j];
    for (size_t j = 0; j < d; ++j) mean[j] /= static_cast<double>(n);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < d; ++j) {
        double t = x[i * d + j] - mean[j];
        var[j] += t * t;
      }
    for (size_t j = 0; j < d; ++j) var[j] /= static_cast<double>(n);
    if (run_mean && run_var)
      for (size_t j = 0; j < d; ++j) {
        run_mean[j] = static_cast<float>((1 - kBnMomentum) * run_mean[j] + kBnMomentum * mean[j]);
        double unbiased = n > 1 ? var[j] * n / (n - 1) : var[j];
        run_var[j] = static_cast<float>((1 - kBnMomentum) * run_var[j] + kBnMomentum * unbiased);
      }
  } else {
    for (size_t j = 0; j < d; ++j) {
      mean[j] = P[b.mean + j];
      var[j] = P[b.var + j];
    }
  }
  if (xhat) xhat->resize(n * d);
  if (invstd) invstd->resize(d);
  for (size_t j = 0; j < d; ++j) {
    const float is = static_cast<float>(1.0 / std::sqrt(var[j] + kBnEps));
    if (invstd) (*invstd)[j] = is;
    const float g = P[b.gamma + j], be = P[b.beta + j];
    for (size_t i = 0; i < n; ++i) {
      const float xh = static_cast<float>(x[i * d + j] - mean[j]) * is;
      if (xhat) (*xhat)[i * d + j] = xh;
      y[i * d + j] = g * xh + be;
    }
  }
}

void linear_forward(const float* a, size_t n, const float* P, const Lin& l, float* y) {
  const float* W = P + l.W;
  const float* bias = P + l.b;
  for (size_t i = 0; i < n; ++i) {
    const float* ai = a + i * l.in;
    float* yi = y + i * l.out;
    for (size_t o = 0; o < l.out; ++o) {
      const float* w = W + o * l.in;
      float s = bias[o];
      for (size_t k = 0; k < l.in; ++k) s += w[k] * ai[k];
      yi[o] = s;
    }
  }
}

// Full forward; train = batch statistics (and running-stat updates when P is mutable).
void forward(const MlpConfig& c, const Layout& L, float* P, const float* X, size_t n, bool train, bool update_running,
             Cache& cache) {
  cache.a.clear();
  cache.xhat.clear();
  cache.invstd.clear();
  cache.pre.clear();
  std::vector<float> cur(X, X + n * c.in);
  if (L.has_in_bn) {
    std::vector<float> y(n * c.in), xh, is;
    batchnorm_forward(cur.data(), n, c.in, P, L.in_bn, train, y.data(), &xh, &is,
                      update_running ? P + L.in_bn.mean : nullptr, update_running ? P + L.in_bn.var : nullptr);
    cache.xhat.push_back(std::move(xh));
    cache.invstd.push_back(std::move(is));
    cur.swap(y);
  }
  for (size_t l = 0; l < c.hidden.size(); ++l) {
    const Lin& lin = L.lin[l];
    cache.a.push_back(cur);
    std::vector<float> z(n * lin.out);
    linear_forward(cur.data(), n, P, lin, z.data());
    if (c.batchnorm) {
      std::vector<float> y(n * lin.out), xh, is;
      batchnorm_forward(z.data(), n, lin.out, P, L.bn[l], train, y.data(), &xh, &is,
                        update_running ? P + L.bn[l].mean : nullptr, update_running ? P + L.bn[l].var : nullptr);
      cache.xhat.push_back(std::move(xh));
      cache.invstd.push_back(std::move(is));
      z.swap(y);
    }
    cache.pre.push_back(z);
    for (auto& v : z) v = v > 0.0f ? v : 0.0f;
    cur.swap(z);
  }
  cache.a.push_back(cur);
  const Lin& outl = L.lin.back();
  cache.logits.assign(n * outl.out, 0.0f);
  linear_forward(cur.data(), n, P, outl, cache.logits.data());
}

void softmax_rows(const float* logits, size_t n, size_t k, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const float* z = logits + i * k;
    float mx = -std::numeric_limits<float>::infinity();
    for (size_t j = 0; j < k; ++j) mx = std::max(mx, z[j]);
    double s = 0.0;
    for (size_t j = 0; j < k; ++j) s += std::exp(static_cast<double>(z[j] - mx));
    for (size_t j = 0; j < k; ++j) out[i * k + j] = static_cast<float>(std::exp(static_cast<double>(z[j] - mx)) / s);
  }
}

// Loss of a batch (mean over rows that have at least one outcome of the mean over their outcomes) and dL/dlogits.
double head_loss(const MlpConfig& c, const float* logits, const float* Y, size_t n, size_t M, const float* psi,
                 std::vector<float>* dlogits) {
  const size_t K = c.out;
  if (dlogits) dlogits->assign(n * K, 0.0f);
  std::vector<float> p(K);
  double total = 0.0;
  size_t rows = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* y = Y + i * M;
    size_t cnt = 0;
    for (size_t m = 0; m < M; ++m) cnt += !std::isnan(y[m]);
    if (cnt == 0) continue;
    rows++;
    double li = 0.0;
    if (c.head == Head::Mixture) {
      softmax_rows(logits + i * K, 1, K, p.data());
      std::vector<double> g(K, 0.0);  // dL/dp_k
      for (size_t m = 0; m < M; ++m) {
        if (std::isnan(y[m])) continue;
        const float* ps = psi + m * K;
        double gam = 0.0;
        for (size_t k = 0; k < K; ++k) gam += static_cast<double>(p[k]) * ps[k];
        gam = std::min(1.0 - kProbEps, std::max(kProbEps, gam));
        li += -(y[m] * std::log(gam) + (1.0 - y[m]) * std::log(1.0 - gam));
        const double dg = (gam - y[m]) / (gam * (1.0 - gam));
        for (size_t k = 0; k < K; ++k) g[k] += dg * ps[k];
      }
      if (dlogits) {
        double pg = 0.0;
        for (size_t k = 0; k < K; ++k) pg += p[k] * g[k];
        for (size_t k = 0; k < K; ++k) (*dlogits)[i * K + k] = static_cast<float>(p[k] * (g[k] - pg) / cnt);
      }
    } else {
      for (size_t m = 0; m < M; ++m) {
        if (std::isnan(y[m])) continue;
        const double z = logits[i * K + m];
        // log loss with logits, stable: softplus(z) - y z
        li += (z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z))) - y[m] * z;
        if (dlogits) (*dlogits)[i * K + m] = static_cast<float>((1.0 / (1.0 + std::exp(-z)) - y[m]) / cnt);
      }
    }
    total += li / cnt;
  }
  if (rows == 0) return 0.0;
  if (dlogits)
    for (auto& v : *dlogits) v /= static_cast<float>(rows);
  return total / rows;
}

void batchnorm_backward(const float* dy, size_t n, size_t d, const float* P, const Bn& b, const std::vector<float>& xhat,
                        const std::vector<float>& invstd, float* dx, float* G) {
  for (size_t j = 0; j < d; ++j) {
    double sdy = 0.0, sdyx = 0.0;
    for (size_t i = 0; i < n; ++i) {
      sdy += dy[i * d + j];
      sdyx += static_cast<double>(dy[i * d + j]) * xhat[i * d + j];
    }
    G[b.gamma + j] += static_cast<float>(sdyx);
    G[b.beta + j] += static_cast<float>(sdy);
    const double g = P[b.gamma + j], is = invstd[j];
    for (size_t i = 0; i < n; ++i) {
      // dx = g * invstd / n * (n dy - sum dy - xhat sum(dy xhat))
      dx[i * d + j] = static_cast<float>(g * is / n * (n * dy[i * d + j] - sdy - xhat[i * d + j] * sdyx));
    }
  }
}

double loss_grad(const MlpConfig& c, const Layout& L, std::vector<float>& P, const float* X, const float* Y, size_t n,
                 size_t M, const float* psi, std::vector<float>* grad, bool update_running) {
  Cache cache;
  forward(c, L, P.data(), X, n, true, update_running, cache);
  std::vector<float> d;
  double loss = head_loss(c, cache.logits.data(), Y, n, M, psi, grad ? &d : nullptr);
  if (!grad) return loss;
  grad->assign(L.total, 0.0f);
  float* G = grad->data();
  // output layer and hidden layers, backwards
  size_t bn_index = cache.xhat.size();
  for (size_t l = L.lin.size(); l-- > 0;) {
    const Lin& lin = L.lin[l];
    const std::vector<float>& a = cache.a[l];
    const float* W = P.data() + lin.W;
    std::vector<float> da(n * lin.in, 0.0f);
    for (size_t i = 0; i < n; ++i) {
      const float* di = d.data() + i * lin.out;
      const float* ai = a.data() + i * lin.in;
      float* dai = da.data() + i * lin.in;
      for (size_t o = 0; o < lin.out; ++o) {
        const float g = di[o];
        if (g == 0.0f) continue;
        G[lin.b + o] += g;
        float* gw = G + lin.W + o * lin.in;
        const float* w = W + o * lin.in;
        for (size_t k = 0; k < lin.in; ++k) {
          gw[k] += g * ai[k];
          dai[k] += g * w[k];
        }
      }
    }
    if (l == 0) {
      if (L.has_in_bn) {
        std::vector<float> dx(n * c.in);
        batchnorm_backward(da.data(), n, c.in, P.data(), L.in_bn, cache.xhat[0], cache.invstd[0], dx.data(), G);
      }
      break;
    }
    // through the ReLU and BN of hidden layer l-1
    const std::vector<float>& pre = cache.pre[l - 1];
    for (size_t i = 0; i < da.size(); ++i)
      if (pre[i] <= 0.0f) da[i] = 0.0f;
    if (c.batchnorm) {
      --bn_index;
      std::vector<float> dz(da.size());
      batchnorm_backward(da.data(), n, lin.in, P.data(), L.bn[l - 1], cache.xhat[bn_index], cache.invstd[bn_index],
                         dz.data(), G);
      d.swap(dz);
    } else {
      d.swap(da);
    }
  }
  return loss;
}

}  // namespace

// The offsets alone: the trainable mask holds a byte per parameter, and a count must be safe to ask of any size.
size_t MlpConfig::param_count() const { return offsets(*this).total; }

Status mlp_validate(const MlpConfig& c) {
  if (c.in < 1 || c.in > 65536) return Status::Invalid("input dimension must be in [1, 65536]");
  if (c.out < 1 || c.out > 65536) return Status::Invalid("output dimension must be in [1, 65536]");
  if (c.hidden.size() > 8) return Status::Invalid("at most 8 hidden layers");
  for (uint32_t h : c.hidden)
    if (h < 1 || h > 65536) return Status::Invalid("hidden layer sizes must be in [1, 65536]");
  // checked before anything is allocated: parameters, gradients, Adam's moments and activations scale with it
  if (c.param_count() > kMaxMlpParams)
    return Status::Invalid("the network has " + std::to_string(c.param_count()) + " parameters; the limit is " + std::to_string(kMaxMlpParams));
  return Status::Ok();
}

void mlp_init(const MlpConfig& c, uint64_t seed, std::vector<float>& P) {
  Layout L = layout(c);
  P.assign(L.total, 0.0f);
  Rng rng(seed);
  auto bn_init = [&](const Bn& b) {
    for (size_t j = 0; j < b.dim; ++j) {
      P[b.gamma + j] = 1.0f;
      P[b.var + j] = 1.0f;
    }
  };
  if (L.has_in_bn) bn_init(L.in_bn);
  for (auto& b : L.bn) bn_init(b);
  for (size_t l = 0; l < L.lin.size(); ++l) {
    const Lin& lin = L.lin[l];
    const bool last = l + 1 == L.lin.size();
    const double sd = std::sqrt((last ? 1.0 : 2.0) / lin.in);
    for (size_t i = 0; i < lin.in * lin.out; ++i) P[lin.W + i] = static_cast<float>(sd * rng.normal());
  }
}

Status mlp_forward(const MlpConfig& c, const float* params, const float* X, size_t n, float* out, int threads) {
  Status st = mlp_validate(c);
  if (!st.ok()) return st;
  Layout L = layout(c);
  return parallel_for(n, threads, 256, [&](size_t b, size_t e, int) {
    Cache cache;
    forward(c, L, const_cast<float*>(params), X + b * c.in, e - b, false, false, cache);
    if (c.head == Head::Mixture) {
      softmax_rows(cache.logits.data(), e - b, c.out, out + b * c.out);
    } else {
      for (size_t i = 0; i < (e - b) * c.out; ++i) out[b * c.out + i] = 1.0f / (1.0f + std::exp(-cache.logits[i]));
    }
    return Status::Ok();
  });
}

double mlp_loss_grad(const MlpConfig& c, const std::vector<float>& params, const float* X, const float* Y, size_t n,
                     size_t M, const float* psi, std::vector<float>* grad) {
  Layout L = layout(c);
  std::vector<float> P(params);
  return loss_grad(c, L, P, X, Y, n, M, psi, grad, false);
}

static double eval_loss(const MlpConfig& c, const std::vector<float>& P, const float* X, const float* Y, size_t n,
                        size_t M, const float* psi) {
  std::vector<float> out(n * c.out);
  Layout L = layout(c);
  Cache cache;
  forward(c, L, const_cast<float*>(P.data()), X, n, false, false, cache);
  return head_loss(c, cache.logits.data(), Y, n, M, psi, nullptr);
}

Status mlp_train(const MlpConfig& c, std::vector<float>& P, const float* X, const float* Y, size_t n, size_t M,
                 const float* psi, const float* Xv, const float* Yv, size_t nv, const MlpTrainOptions& opt,
                 MlpTrainReport& rep) {
  Status st = mlp_validate(c);
  if (!st.ok()) return st;
  if (c.head == Head::Mixture && !psi) return Status::Invalid("the mixture head needs psi");
  if (c.head == Head::Sigmoid && M != c.out) return Status::Invalid("the sigmoid head needs one output per LLM");
  if (n < 2) return Status::Invalid("training needs at least 2 rows");
  if (!(opt.lr > 0) || !std::isfinite(opt.lr)) return Status::Invalid("learning rate must be > 0");
  if (opt.batch < 2) return Status::Invalid("batch size must be at least 2 (batch-norm)");
  Layout L = layout(c);
  if (P.size() != L.total) mlp_init(c, opt.seed, P);
  std::vector<float> m1(L.total, 0.0f), m2(L.total, 0.0f), grad;
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  uint64_t t = 0;
  Rng rng(opt.seed ^ 0xA5A5A5A5ull);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> bx, by;
  std::vector<float> best = P;
  double best_val = std::numeric_limits<double>::infinity();
  uint32_t since = 0;
  rep = MlpTrainReport{};
  for (uint32_t ep = 0; ep < opt.epochs; ++ep) {
    for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    double sum = 0.0;
    size_t batches = 0;
    for (size_t s = 0; s < n; s += opt.batch) {
      size_t e = std::min(n, s + opt.batch);
      if (e - s < 2) break;  // batch-norm needs two rows
      bx.resize((e - s) * c.in);
      by.resize((e - s) * M);
      for (size_t i = s; i < e; ++i) {
        std::memcpy(bx.data() + (i - s) * c.in, X + order[i] * c.in, c.in * sizeof(float));
        std::memcpy(by.data() + (i - s) * M, Y + order[i] * M, M * sizeof(float));
      }
      double loss = loss_grad(c, L, P, bx.data(), by.data(), e - s, M, psi, &grad, true);
      if (!std::isfinite(loss)) return Status::Internal("training diverged (non-finite loss)");
      sum += loss;
      batches++;
      ++t;
      const float c1 = 1.0f - std::pow(b1, static_cast<float>(t)), c2 = 1.0f - std::pow(b2, static_cast<float>(t));
      for (size_t i = 0; i < L.total; ++i) {
        if (!L.trainable[i]) continue;
        float g = grad[i] + opt.weight_decay * P[i];
        m1[i] = b1 * m1[i] + (1 - b1) * g;
        m2[i] = b2 * m2[i] + (1 - b2) * g * g;
        P[i] -= opt.lr * (m1[i] / c1) / (std::sqrt(m2[i] / c2) + eps);
      }
    }
    rep.train_loss.push_back(static_cast<float>(batches ? sum / batches : 0.0));
    if (nv > 0) {
      double v = eval_loss(c, P, Xv, Yv, nv, M, psi);
      rep.val_loss.push_back(static_cast<float>(v));
      if (v < best_val - 1e-7) {
        best_val = v;
        best = P;
        rep.best_epoch = ep + 1;
        since = 0;
      } else if (++since >= opt.patience) {
        break;
      }
    } else {
      best = P;
      rep.best_epoch = ep + 1;
    }
  }
  P.swap(best);
  return Status::Ok();
}

}  // namespace uniroute
