#include "embed.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "isa.h"
#include "linalg.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace uniroute {

namespace {
constexpr uint32_t kSaltWord = 0x5bd1e995u;
constexpr uint32_t kSaltBigram = 0x27d4eb2fu;
constexpr uint32_t kSaltChar = 0x165667b1u;
constexpr uint32_t kBigramMul = 0x9E3779B1u;

// 1 + ln(c) for small counts, computed once (the same float the formula gives).
struct LogTable {
  float v[256];
  LogTable() {
    v[0] = 0.0f;
    for (int c = 1; c < 256; ++c) v[c] = 1.0f + std::log(static_cast<float>(c));
  }
};
const LogTable kLog;
inline float sublinear_tf(uint32_t c) { return c < 256 ? kLog.v[c] : 1.0f + std::log(static_cast<float>(c)); }

// Byte classes: 0 other (a one-byte token), 1 word byte, 2 white space; and the lower-casing map.
struct ByteTables {
  uint8_t cls[256];
  uint8_t lower[256];
  ByteTables() {
    for (int c = 0; c < 256; ++c) {
      bool word = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
      bool space = c == ' ' || (c >= '\t' && c <= '\r');
      cls[c] = space ? 2 : word ? 1 : 0;
      lower[c] = static_cast<uint8_t>((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
  }
};
const ByteTables kBytes;

inline uint32_t fnv4(const uint8_t* p) {
  uint32_t h = 2166136261u;
  h = (h ^ p[0]) * 16777619u;
  h = (h ^ p[1]) * 16777619u;
  h = (h ^ p[2]) * 16777619u;
  h = (h ^ p[3]) * 16777619u;
  return h;
}
}  // namespace

FeatureExtractor::FeatureExtractor(const EmbedConfig& cfg)
    : cfg_(cfg), shift_(32u - cfg.buckets_log2), counts_(cfg.buckets(), 0) {}

FeatureExtractor& FeatureExtractor::for_thread(const EmbedConfig& cfg) {
  thread_local std::unique_ptr<FeatureExtractor> mine;
  if (!mine || mine->busy_ || mine->cfg_.buckets_log2 != cfg.buckets_log2 || mine->cfg_.char_n != cfg.char_n || mine->cfg_.dim != cfg.dim)
    mine = std::make_unique<FeatureExtractor>(cfg);
  return *mine;
}

void FeatureExtractor::extract(const char* text, size_t len, std::vector<Feature>& out) {
  busy_ = true;
  out.clear();
  // 1. normalise
  if (norm_.size() < len) norm_.resize(len);
  uint8_t* p = norm_.data();
  size_t m = 0;
  bool pending_space = false;
  const uint8_t* s = reinterpret_cast<const uint8_t*>(text);
  for (size_t i = 0; i < len; ++i) {
    const uint8_t c = s[i];
    if (kBytes.cls[c] == 2) {
      pending_space = m > 0;
      continue;
    }
    if (pending_space) {
      p[m++] = ' ';
      pending_space = false;
    }
    p[m++] = kBytes.lower[c];
  }
  // at most m tokens, m - 1 bigrams and m windows
  if (touched_.size() < 3 * m + 2) touched_.resize(3 * m + 2);
  uint32_t* touched = touched_.data();
  uint32_t* counts = counts_.data();
  size_t nt = 0;
  const uint32_t shift = shift_;
  auto add = [&](uint32_t h) {
    const uint32_t b = (h * kBigramMul) >> shift;
    touched[nt] = b;
    nt += counts[b]++ == 0;
  };
  // 2-4. tokens, unigrams, bigrams
  bool have_prev = false;
  uint32_t prev = 0;
  size_t i = 0;
  while (i < m) {
    const uint8_t c = p[i];
    if (c == ' ') {
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (kBytes.cls[c] == 1)
      while (j < m && kBytes.cls[p[j]] == 1) ++j;
    const uint32_t t = fnv1a32(p + i, j - i);
    add(t ^ kSaltWord);
    if (have_prev) add((prev * kBigramMul) ^ t ^ kSaltBigram);
    prev = t;
    have_prev = true;
    i = j;
  }
  // character windows
  const size_t n = cfg_.char_n;
  if (m > 0) {
    if (m < n) {
      add(fnv1a32(p, m) ^ kSaltChar);
    } else if (n == 4) {
      for (size_t k = 0; k + 4 <= m; ++k) add(fnv4(p + k) ^ kSaltChar);
    } else {
      for (size_t k = 0; k + n <= m; ++k) add(fnv1a32(p + k, n) ^ kSaltChar);
    }
  }
  // 5. distinct buckets with sublinear tf; reset scratch
  out.resize(nt);
  for (size_t t = 0; t < nt; ++t) {
    const uint32_t b = touched[t];
    out[t] = {b, sublinear_tf(counts[b])};
    counts[b] = 0;
  }
  busy_ = false;
}

Status Projection::validate() const {
  if (cfg.buckets_log2 < 4 || cfg.buckets_log2 > 24) return Status::Invalid("bucketsLog2 must be in [4, 24]");
  if (cfg.dim < 1 || cfg.dim > 4096) return Status::Invalid("dim must be in [1, 4096]");
  if (cfg.char_n < 1 || cfg.char_n > 16) return Status::Invalid("charN must be in [1, 16]");
  if (q.size() != cfg.buckets() * cfg.dim) return Status::Invalid("projection must have buckets x dim entries");
  if (scale.size() != cfg.buckets()) return Status::Invalid("scale must have one entry per bucket");
  for (float s : scale)
    if (!std::isfinite(s)) return Status::Invalid("scale contains a non-finite value");
  return Status::Ok();
}

void* huge_page_alloc(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < kHuge) {
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without huge pages the memory is ordinary
#endif
  return p;
}

void huge_page_free(void* p, size_t) { std::free(p); }

void embed_one(const Projection& p, FeatureExtractor& fx, std::vector<Feature>& feats, const char* text, size_t len,
               float* out) {
  fx.extract(text, len, feats);
  kernels().project(p.q.data(), p.scale.data(), feats.data(), feats.size(), p.cfg.dim, out);
}

uint64_t next_projection_id() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

Status embed_batch(const Projection& p, const TextRef* texts, size_t n, float* out, int threads) {
  const size_t D = p.cfg.dim;
  return parallel_for(n, threads, 64, [&](size_t b, size_t e, int) {
    FeatureExtractor& fx = FeatureExtractor::for_thread(p.cfg);
    std::vector<Feature> feats;
    for (size_t i = b; i < e; ++i) embed_one(p, fx, feats, texts[i].data, texts[i].len, out + i * D);
    return Status::Ok();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Fitting: IDF + truncated SVD of the L2-normalised TF-IDF matrix, by a randomized range finder with power
// iterations (Halko, Martinsson & Tropp 2011), orthonormalising through the eigen-decomposition of the Gram matrix.

namespace {

struct Csr {
  size_t rows = 0, cols = 0;
  std::vector<size_t> ptr;
  std::vector<uint32_t> idx;
  std::vector<float> val;
};

// Y (rows x L) = A (rows x cols, CSR) * W (cols x L, dense)
Status spmm(const Csr& A, const std::vector<float>& W, size_t L, std::vector<float>& Y, int threads) {
  Y.assign(A.rows * L, 0.0f);
  return parallel_for(A.rows, threads, 256, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) {
      float* y = Y.data() + i * L;
      for (size_t t = A.ptr[i]; t < A.ptr[i + 1]; ++t) {
        const float v = A.val[t];
        const float* w = W.data() + static_cast<size_t>(A.idx[t]) * L;
        for (size_t l = 0; l < L; ++l) y[l] += v * w[l];
      }
    }
    return Status::Ok();
  });
}

Csr transpose(const Csr& A) {
  Csr T;
  T.rows = A.cols;
  T.cols = A.rows;
  T.ptr.assign(A.cols + 1, 0);
  for (uint32_t j : A.idx) T.ptr[j + 1]++;
  for (size_t j = 0; j < A.cols; ++j) T.ptr[j + 1] += T.ptr[j];
  T.idx.resize(A.idx.size());
  T.val.resize(A.val.size());
  std::vector<size_t> pos(T.ptr.begin(), T.ptr.end() - 1);
  for (size_t i = 0; i < A.rows; ++i)
    for (size_t t = A.ptr[i]; t < A.ptr[i + 1]; ++t) {
      size_t p = pos[A.idx[t]]++;
      T.idx[p] = static_cast<uint32_t>(i);
      T.val[p] = A.val[t];
    }
  return T;
}

// Gram matrix G = Y^T Y (L x L, double), accumulated per thread then summed.
Status gram(const std::vector<float>& Y, size_t rows, size_t L, std::vector<double>& G, int threads) {
  int t = threads <= 0 ? default_threads() : threads;
  std::vector<std::vector<double>> parts(static_cast<size_t>(t), std::vector<double>(L * L, 0.0));
  Status st = parallel_for(rows, t, 512, [&](size_t b, size_t e, int ti) {
    std::vector<double>& g = parts[static_cast<size_t>(ti)];
    std::vector<double> row(L);
    for (size_t i = b; i < e; ++i) {
      const float* y = Y.data() + i * L;
      for (size_t a = 0; a < L; ++a) row[a] = y[a];
      for (size_t a = 0; a < L; ++a) {
        const double ya = row[a];
        if (ya == 0.0) continue;
        double* ga = g.data() + a * L;
        for (size_t c = a; c < L; ++c) ga[c] += ya * row[c];
      }
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  G.assign(L * L, 0.0);
  for (auto& p : parts)
    for (size_t i = 0; i < L * L; ++i) G[i] += p[i];
  for (size_t a = 0; a < L; ++a)
    for (size_t c = 0; c < a; ++c) G[a * L + c] = G[c * L + a];
  return Status::Ok();
}

// Y <- Y * M where M is L x L (double); done row by row.
Status right_multiply(std::vector<float>& Y, size_t rows, size_t L, const std::vector<double>& M, size_t out_cols,
                      std::vector<float>& out, int threads) {
  out.assign(rows * out_cols, 0.0f);
  return parallel_for(rows, threads, 256, [&](size_t b, size_t e, int) {
    std::vector<double> acc(out_cols);
    for (size_t i = b; i < e; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const float* y = Y.data() + i * L;
      for (size_t a = 0; a < L; ++a) {
        const double ya = y[a];
        if (ya == 0.0) continue;
        const double* m = M.data() + a * L;
        for (size_t c = 0; c < out_cols; ++c) acc[c] += ya * m[c];
      }
      float* o = out.data() + i * out_cols;
      for (size_t c = 0; c < out_cols; ++c) o[c] = static_cast<float>(acc[c]);
    }
    return Status::Ok();
  });
}

// Orthonormalises the columns of Y (rows x L) in place: Q = Y U S^-1/2 over the well-conditioned eigenpairs of Y^T Y.
Status orthonormalise(std::vector<float>& Y, size_t rows, size_t L, int threads) {
  std::vector<double> G, vals, vecs;
  Status st = gram(Y, rows, L, G, threads);
  if (!st.ok()) return st;
  if (!(st = sym_eigen(L, G, vals, vecs)).ok()) return st;
  const double top = vals.empty() ? 0.0 : vals[0];
  std::vector<double> M(L * L, 0.0);
  for (size_t j = 0; j < L; ++j) {
    if (!(vals[j] > top * 1e-10) || vals[j] <= 0.0) continue;  // drop a dependent direction
    const double inv = 1.0 / std::sqrt(vals[j]);
    for (size_t a = 0; a < L; ++a) M[a * L + j] = vecs[a * L + j] * inv;
  }
  std::vector<float> out;
  st = right_multiply(Y, rows, L, M, L, out, threads);
  if (!st.ok()) return st;
  Y.swap(out);
  return Status::Ok();
}

}  // namespace

Status fit_projection(const TextRef* texts, size_t n, const EmbedConfig& cfg, const EmbedFitOptions& opt,
                      Projection& out, EmbedFitReport& report) {
  if (n == 0) return Status::Invalid("fitting the embedder needs at least one text");
  if (cfg.buckets_log2 < 4 || cfg.buckets_log2 > 24) return Status::Invalid("bucketsLog2 must be in [4, 24]");
  if (cfg.dim < 1 || cfg.dim > 4096) return Status::Invalid("dim must be in [1, 4096]");
  if (cfg.char_n < 1 || cfg.char_n > 16) return Status::Invalid("charN must be in [1, 16]");
  const size_t B = cfg.buckets();
  const int threads = opt.threads <= 0 ? default_threads() : opt.threads;

  // Features of every text, in parallel, then stitched into one CSR over raw buckets.
  std::vector<std::vector<Feature>> feats(n);
  Status st = parallel_for(n, threads, 64, [&](size_t b, size_t e, int) {
    FeatureExtractor fx(cfg);
    for (size_t i = b; i < e; ++i) fx.extract(texts[i].data, texts[i].len, feats[i]);
    return Status::Ok();
  });
  if (!st.ok()) return st;

  std::vector<uint32_t> df(B, 0);
  for (auto& f : feats)
    for (auto& x : f) df[x.bucket]++;
  const uint32_t min_df = n >= 20 ? std::max<uint32_t>(1, opt.min_df) : 1;
  std::vector<int64_t> col_of(B, -1);
  std::vector<uint32_t> bucket_of;
  std::vector<float> idf(B, 0.0f);
  for (size_t b = 0; b < B; ++b) {
    if (df[b] >= min_df && df[b] > 0) {
      col_of[b] = static_cast<int64_t>(bucket_of.size());
      bucket_of.push_back(static_cast<uint32_t>(b));
      idf[b] = static_cast<float>(std::log((1.0 + n) / (1.0 + df[b])) + 1.0);
    }
  }
  const size_t C = bucket_of.size();
  report.texts = n;
  report.kept_buckets = C;
  out.cfg = cfg;
  out.q.assign(B * cfg.dim, 0);
  out.scale.assign(B, 0.0f);
  if (C == 0) return Status::Invalid("the training texts have no feature in common; cannot fit the embedder");

  Csr X;
  X.rows = n;
  X.cols = C;
  X.ptr.assign(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    double ss = 0.0;
    size_t start = X.idx.size();
    for (auto& f : feats[i]) {
      int64_t c = col_of[f.bucket];
      if (c < 0) continue;
      float v = f.weight * idf[f.bucket];
      X.idx.push_back(static_cast<uint32_t>(c));
      X.val.push_back(v);
      ss += static_cast<double>(v) * v;
    }
    if (ss > 0) {
      float inv = static_cast<float>(1.0 / std::sqrt(ss));
      for (size_t t = start; t < X.idx.size(); ++t) X.val[t] *= inv;
    }
    X.ptr[i + 1] = X.idx.size();
    std::vector<Feature>().swap(feats[i]);
  }
  Csr XT = transpose(X);

  const size_t r = std::min<size_t>({cfg.dim, n, C});
  const size_t L = std::min<size_t>(r + opt.oversample, std::min(n, C));
  report.rank = r;

  // Omega: C x L Gaussian, column-independent of thread count (row j from its own stream).
  std::vector<float> W(C * L);
  st = parallel_for(C, threads, 1024, [&](size_t b, size_t e, int) {
    for (size_t j = b; j < e; ++j) {
      Rng rng(opt.seed * 0x100000001B3ull + j * 0x9E3779B97F4A7C15ull + 1);
      for (size_t l = 0; l < L; ++l) W[j * L + l] = static_cast<float>(rng.normal());
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  std::vector<float> Y;
  if (!(st = spmm(X, W, L, Y, threads)).ok()) return st;
  for (uint32_t it = 0; it < opt.power_iters; ++it) {
    if (!(st = orthonormalise(Y, n, L, threads)).ok()) return st;
    if (!(st = spmm(XT, Y, L, W, threads)).ok()) return st;  // W = X^T Q   (C x L)
    if (!(st = spmm(X, W, L, Y, threads)).ok()) return st;   // Y = X W     (n x L)
  }
  if (!(st = orthonormalise(Y, n, L, threads)).ok()) return st;
  // W = X^T Q (C x L) = B^T where B = Q^T X.  B B^T = W^T W = E diag(s^2) E^T; V = W E diag(1/s).
  if (!(st = spmm(XT, Y, L, W, threads)).ok()) return st;
  std::vector<double> G, vals, vecs;
  if (!(st = gram(W, C, L, G, threads)).ok()) return st;
  if (!(st = sym_eigen(L, G, vals, vecs)).ok()) return st;
  std::vector<double> M(L * L, 0.0);
  report.singular_values.clear();
  size_t kept_rank = 0;
  for (size_t j = 0; j < r; ++j) {
    double s2 = vals[j];
    if (!(s2 > (vals[0] * 1e-12)) || s2 <= 0.0) break;
    double inv = 1.0 / std::sqrt(s2);
    for (size_t a = 0; a < L; ++a) M[a * L + j] = vecs[a * L + j] * inv;
    report.singular_values.push_back(static_cast<float>(std::sqrt(s2)));
    kept_rank++;
  }
  report.rank = kept_rank;
  std::vector<float> V;  // C x r
  if (!(st = right_multiply(W, C, L, M, r, V, threads)).ok()) return st;

  // Rows: idf_b * V[col(b), :], int8 with a per-row scale.
  const size_t D = cfg.dim;
  for (size_t c = 0; c < C; ++c) {
    const uint32_t b = bucket_of[c];
    const float* v = V.data() + c * r;
    float mx = 0.0f;
    for (size_t d = 0; d < r; ++d) mx = std::max(mx, std::fabs(v[d] * idf[b]));
    if (!(mx > 0.0f) || !std::isfinite(mx)) continue;
    const float s = mx / 127.0f;
    int8_t* qrow = out.q.data() + static_cast<size_t>(b) * D;
    for (size_t d = 0; d < r; ++d) {
      float x = std::nearbyint(v[d] * idf[b] / s);
      qrow[d] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, x)));
    }
    out.scale[b] = s;
  }
  return Status::Ok();
}

}  // namespace uniroute
