// Native test program for the CPU core: each op against a plain reference, determinism across thread counts,
// and statuses (never aborts) on bad input. Run by ctest; under AddressSanitizer with -DUNIROUTE_ASAN=ON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../core/assign.h"
#include "../core/backend.h"
#include "../core/embed.h"
#include "../core/isa.h"
#include "../core/kmeans.h"
#include "../core/linalg.h"
#include "../core/mlp.h"
#include "../core/route.h"
#include "../core/score.h"
#include "../cuda/backend.h"

#include <fstream>

using namespace uniroute;

static int g_failed = 0, g_passed = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      ++g_passed;                                          \
    } else {                                               \
      ++g_failed;                                          \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                   \
      std::fprintf(stderr, "\n");                          \
    }                                                      \
  } while (0)

static std::vector<float> random_matrix(size_t n, size_t d, uint64_t seed) {
  Rng r(seed);
  std::vector<float> x(n * d);
  for (auto& v : x) v = static_cast<float>(r.normal());
  return x;
}

static void test_eigen() {
  const size_t n = 40;
  auto a = random_matrix(n, n, 7);
  std::vector<double> s(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) s[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
  std::vector<double> vals, vecs;
  sym_eigen(n, s, vals, vecs);
  double err = 0.0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      double r = 0.0;
      for (size_t c = 0; c < n; ++c) r += vecs[i * n + c] * vals[c] * vecs[j * n + c];
      err = std::max(err, std::fabs(r - s[i * n + j]));
    }
  CHECK(err < 1e-9, "eigen reconstruction error %g", err);
  bool sorted = true;
  for (size_t i = 1; i < n; ++i) sorted &= vals[i] <= vals[i - 1];
  CHECK(sorted, "eigenvalues not sorted");
  // NaN anywhere: refused, and (under ASan) nothing is read out of bounds
  std::vector<double> bad(s);
  bad[3 * n + 5] = NAN;
  CHECK(!sym_eigen(n, bad, vals, vecs).ok(), "a NaN matrix must be refused");
  std::vector<double> inf(s);
  inf[0] = INFINITY;
  CHECK(!sym_eigen(n, inf, vals, vecs).ok(), "an infinite value must be refused");
}

static void test_assign() {
  const size_t n = 1000, d = 37, k = 13;
  auto X = random_matrix(n, d, 1), C = random_matrix(k, d, 2);
  std::vector<int32_t> idx(n);
  std::vector<float> dist(n);
  Status st = assign_nearest(X.data(), n, d, C.data(), k, idx.data(), dist.data(), 2);
  CHECK(st.ok(), "assign status %s", st.message.c_str());
  size_t mismatched = 0;
  double maxerr = 0;
  for (size_t i = 0; i < n; ++i) {
    double best = 1e300, second = 1e300;
    int32_t arg = -1;
    for (size_t c = 0; c < k; ++c) {
      double s = 0;
      for (size_t j = 0; j < d; ++j) s += std::pow(double(X[i * d + j]) - C[c * d + j], 2);
      if (s < best) { second = best; best = s; arg = int32_t(c); }
      else if (s < second) second = s;
    }
    if (arg != idx[i] && second - best > 1e-3) mismatched++;
    maxerr = std::max(maxerr, std::fabs(std::sqrt(best) - dist[i]));
  }
  CHECK(mismatched == 0, "assign disagrees with brute force on %zu points", mismatched);
  CHECK(maxerr < 1e-3, "assign distance error %g", maxerr);
}

// The blocked assignment kernel on awkward shapes: tiles of 4 rows (n around 4 and 256), blocks of 32 centroids
// (k around 32 and 64, k = 1), dimensions that are not a multiple of the vector width, empty input; against a
// double-precision brute force (exact ids except float near-ties), on 1 and 2 threads (identical).
static void test_assign_cases() {
  Engine eng;
  for (const std::string& backend : eng.names()) {
  if (!eng.select(backend).ok()) {
    std::printf("assignment op table: %s skipped (unusable here)\n", backend.c_str());
    continue;
  }
  size_t cases = 0, bad = 0;
  for (size_t n : {0, 1, 3, 4, 5, 255, 256, 257})
    for (size_t k : {1, 2, 31, 32, 33, 64, 65})
      for (size_t d : {1, 7, 16, 37}) {
        if (k > 40 && d == 1) continue;
        auto X = random_matrix(n, d, 100 + n), C = random_matrix(k, d, 200 + k);
        std::vector<int32_t> i1(n, -1), i2(n, -1);
        std::vector<float> d1(n), d2(n), dots(n * k);
        Status s1 = eng.run(AssignArgs{X.data(), n, d, C.data(), k, i1.data(), d1.data(), 1});
        Status s2 = eng.run(AssignArgs{X.data(), n, d, C.data(), k, i2.data(), d2.data(), 2});
        const PackedCentroids P = pack_centroids(C.data(), k, d);
        dot_rows(P, X.data(), 0, n, dots.data(), k);
        ++cases;
        bool ok = s1.ok() && s2.ok() && i1 == i2 && (backend != "cpu" || d1 == d2);
        for (size_t i = 0; i < n && ok; ++i) {
          double best = 1e300, second = 1e300;
          int32_t arg = -1;
          for (size_t c = 0; c < k; ++c) {
            double sq = 0, dot = 0;
            for (size_t j = 0; j < d; ++j) {
              sq += std::pow(double(X[i * d + j]) - C[c * d + j], 2);
              dot += double(X[i * d + j]) * C[c * d + j];
            }
            ok &= std::fabs(dot - dots[i * k + c]) <= 1e-4 * (1.0 + std::fabs(dot)) * std::sqrt(double(d));
            if (sq < best) {
              second = best;
              best = sq;
              arg = int32_t(c);
            } else if (sq < second) {
              second = sq;
            }
          }
          ok &= (arg == i1[i] || second - best <= 1e-3) && std::fabs(std::sqrt(best) - d1[i]) < 1e-3;
        }
        if (!ok) {
          ++bad;
          std::fprintf(stderr, "  %s assign case n=%zu k=%zu d=%zu disagrees\n", backend.c_str(), n, k, d);
        }
      }
  CHECK(bad == 0, "%s assignment: %zu of %zu shape cases disagree with brute force", backend.c_str(), bad, cases);
  std::printf("assignment op table: %s, %zu shape cases\n", backend.c_str(), cases);
  }
  std::vector<int32_t> idx(1);
  CHECK(!assign_nearest(nullptr, 0, 4, nullptr, 0, idx.data(), nullptr, 1).ok(), "assign accepted k = 0");
}

// The persistent worker pool: repeated and nested parallel_for start no threads after the first call; a part that
// throws becomes a status; every index is visited once.
static void test_worker_pool() {
  std::vector<int> hits(10000, 0);
  CHECK(parallel_for(hits.size(), 2, 1, [&](size_t b, size_t e, int) {
          for (size_t i = b; i < e; ++i) hits[i]++;
          return Status::Ok();
        }).ok(), "parallel_for failed");
  const size_t started = WorkerPool::threads_started();
  for (int rep = 0; rep < 200; ++rep)
    parallel_for(hits.size(), 4, 16, [&](size_t b, size_t e, int) {
      // nested: runs inline on the part's thread
      return parallel_for(e - b, 2, 1, [&](size_t b2, size_t e2, int) {
        for (size_t i = b + b2; i < b + e2; ++i) hits[i]++;
        return Status::Ok();
      });
    });
  bool once = true;
  for (int h : hits) once &= h == 201;
  CHECK(once, "parallel_for visited an index other than once per call");
  CHECK(WorkerPool::threads_started() == started, "repeated parallel_for started %zu new threads",
        WorkerPool::threads_started() - started);
  Status st = parallel_for(1000, 2, 1, [&](size_t b, size_t, int) -> Status {
    if (b > 0) throw std::bad_alloc();
    return Status::Ok();
  });
  CHECK(st.code == Code::OutOfMemory, "a throwing part must give OutOfMemory, got '%s'", st.message.c_str());
}

// The registry: a backend that fails has its call rerun on the CPU (never a wrong answer); a sticky failure disables
// it with one warning; bad input is the caller's error, not a fallback; unknown and unusable backends are refused.
class FaultyBackend final : public Backend {
 public:
  explicit FaultyBackend(Code c) : code_(c) {}
  std::string name() const override { return "faulty"; }
  bool usable(std::string*) const override { return true; }
  bool runs(const AssignArgs&) const override { return true; }
  Status run(const AssignArgs& a) override {
    ++calls;
    for (size_t i = 0; i < a.n; ++i) a.idx[i] = -7;  // a partial, wrong answer before failing
    return Status{code_, "simulated device failure"};
  }
  int calls = 0;

 private:
  Code code_;
};

static void test_backend_registry() {
  const size_t n = 300, d = 20, k = 7;
  auto X = random_matrix(n, d, 41), C = random_matrix(k, d, 42);
  std::vector<int32_t> want(n), got(n);
  assign_nearest(X.data(), n, d, C.data(), k, want.data(), nullptr, 1);
  for (Code code : {Code::DeviceLost, Code::Internal}) {
    Engine eng;
    auto* f = new FaultyBackend(code);
    eng.add(std::unique_ptr<Backend>(f));
    int warnings = 0;
    eng.on_disabled([&](const std::string& b, const std::string&) { warnings += b == "faulty"; });
    CHECK(eng.select("faulty").ok() && eng.selected() == "faulty", "a usable registered backend must be selectable");
    for (int rep = 0; rep < 3; ++rep) {
      std::fill(got.begin(), got.end(), 0);
      Status st = eng.run(AssignArgs{X.data(), n, d, C.data(), k, got.data(), nullptr, 1});
      CHECK(st.ok() && got == want, "a failed backend's call must be rerun on the CPU with the CPU's answer");
    }
    if (code == Code::DeviceLost) {
      CHECK(f->calls == 1 && warnings == 1 && eng.fallbacks() == 1, "a sticky failure must disable the backend after one call (calls %d, warnings %d)", f->calls, warnings);
      CHECK(eng.selected() == "cpu", "a disabled backend must not stay selected");
      CHECK(!eng.select("faulty").ok(), "a disabled backend must not be selectable again");
    } else {
      CHECK(f->calls == 3 && warnings == 0 && eng.fallbacks() == 3, "a transient failure falls back per call and keeps the backend");
    }
    CHECK(eng.last_failure().find("simulated device failure") != std::string::npos, "the last failure must be kept");
  }
  Engine eng;
  CHECK(!eng.select("nope").ok(), "an unknown backend must be refused");
  std::string why;
  if (!make_cuda_backend()->usable(&why)) {
    Status st = eng.select("cuda");
    CHECK(!st.ok() && st.message.find(why) != std::string::npos, "cuda without a device must be refused with the reason");
    CHECK(eng.select("auto").ok() && eng.selected() == "cpu", "auto without a device is the CPU");
  }
  std::vector<int32_t> bad(n);
  CHECK(eng.run(AssignArgs{X.data(), n, d, C.data(), 0, bad.data(), nullptr, 1}).code == Code::InvalidArgument,
        "bad input is the caller's error");
}

static void test_kmeans() {
  // three well separated blobs
  const size_t per = 200, d = 8, k = 3;
  std::vector<float> X;
  Rng r(5);
  for (size_t c = 0; c < k; ++c)
    for (size_t i = 0; i < per; ++i)
      for (size_t j = 0; j < d; ++j) X.push_back(float((j == c ? 10.0 : 0.0) + 0.3 * r.normal()));
  const size_t n = per * k;
  std::vector<float> C(k * d), C2(k * d);
  std::vector<int32_t> A(n), A2(n);
  KMeansResult res, res2;
  KMeansOptions o;
  o.seed = 11;
  o.threads = 1;
  CHECK(kmeans(X.data(), n, d, k, o, C.data(), A.data(), res).ok(), "kmeans failed");
  bool pure = true;
  for (size_t c = 0; c < k; ++c)
    for (size_t i = 1; i < per; ++i) pure &= A[c * per + i] == A[c * per];
  CHECK(pure, "kmeans did not recover the blobs");
  o.threads = 2;
  CHECK(kmeans(X.data(), n, d, k, o, C2.data(), A2.data(), res2).ok(), "kmeans failed (2 threads)");
  CHECK(C == C2 && A == A2, "kmeans differs across thread counts");
  // the seeding's pruning changes nothing, bit for bit, and does skip points here: 12 blobs in 16 dimensions (and
  // one blob far out, so that distances vary in scale), k = 12 and k = 20, 1 and 2 threads
  {
    const size_t bk = 12, bd = 16, bper = 150, bn = bk * bper;
    std::vector<float> B(bn * bd);
    Rng rb(8);
    for (size_t i = 0; i < bn; ++i)
      for (size_t j = 0; j < bd; ++j)
        B[i * bd + j] = float((i / bper == 11 ? 1000.0 : 6.0) * ((i / bper + j) % 5 == 0) + 0.5 * rb.normal());
    for (size_t kk : {size_t(12), size_t(20)})
      for (int th : {1, 2}) {
        KMeansOptions on, off;
        on.seed = off.seed = 5;
        on.n_init = off.n_init = 2;
        on.threads = off.threads = th;
        off.prune = false;
        std::vector<float> C1(kk * bd), C0(kk * bd);
        std::vector<int32_t> A1(bn), A0(bn);
        KMeansResult r1, r0;
        CHECK(kmeans(B.data(), bn, bd, kk, on, C1.data(), A1.data(), r1).ok() &&
                  kmeans(B.data(), bn, bd, kk, off, C0.data(), A0.data(), r0).ok(), "kmeans failed (pruning check)");
        CHECK(C1 == C0 && A1 == A0 && r1.inertia == r0.inertia, "pruned seeding changed the result (k %zu, %d threads)", kk, th);
        // (at k = 20 some blobs hold two centroids, close together: Lloyd may then skip none)
        CHECK(r1.seeding_skipped > 0 && r0.seeding_skipped == 0 && (kk == 20 || r1.lloyd_skipped > 0) && r0.lloyd_skipped == 0,
              "pruning skipped %llu seeding rows and %llu Lloyd points (k %zu)", static_cast<unsigned long long>(r1.seeding_skipped),
              static_cast<unsigned long long>(r1.lloyd_skipped), kk);
        CHECK(r1.iterations == r0.iterations && r1.reseeded == r0.reseeded, "pruning changed the iterations or re-seeds (k %zu)", kk);
      }
  }
  std::vector<float> nanX(X);
  nanX[5] = NAN;
  CHECK(!kmeans(nanX.data(), n, d, k, o, C.data(), A.data(), res).ok(), "kmeans accepted NaN");
  CHECK(!kmeans(X.data(), 2, d, 3, o, C.data(), A.data(), res).ok(), "kmeans accepted k > n");
  // duplicates: more clusters than distinct points forces re-seeding, never a crash
  std::vector<float> dup(50 * 2, 1.0f);
  std::vector<float> Cd(5 * 2);
  std::vector<int32_t> Ad(50);
  CHECK(kmeans(dup.data(), 50, 2, 5, o, Cd.data(), Ad.data(), res).ok(), "kmeans on duplicates failed");
}

static void test_score() {
  const size_t m = 7, k = 5, n = 300;
  auto psi_raw = random_matrix(m, k, 3);
  std::vector<float> psi(m * k), cost(m);
  for (size_t i = 0; i < m * k; ++i) psi[i] = 1.0f / (1.0f + std::exp(psi_raw[i]));
  for (size_t j = 0; j < m; ++j) cost[j] = 0.1f * float(j + 1);
  Pool p{m, k, psi.data(), cost.data(), 0.3f};  // m, k, psi, cost, lambda
  std::vector<int32_t> cl(n), ch(n), ch2(n);
  std::vector<float> Z(n * k, 0.0f), g1(n * m), g2(n * m);
  for (size_t i = 0; i < n; ++i) {
    cl[i] = int32_t(i % k);
    Z[i * k + cl[i]] = 1.0f;
  }
  CHECK(score_batch_hard(p, cl.data(), n, ch.data(), g1.data(), 2).ok(), "score hard failed");
  CHECK(score_batch_soft(p, Z.data(), n, ch2.data(), g2.data(), 2).ok(), "score soft failed");
  CHECK(ch == ch2 && g1 == g2, "one-hot soft scoring differs from hard scoring");
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    int32_t best = -1;
    float bs = 1e30f;
    for (size_t j = 0; j < m; ++j) {
      float s = psi[j * k + cl[i]] + p.lambda * cost[j];
      if (s < bs) { bs = s; best = int32_t(j); }
    }
    bad += best != ch[i];
  }
  CHECK(bad == 0, "scoring disagrees with reference on %zu prompts", bad);
  std::vector<uint8_t> allowed(m, 0);
  allowed[4] = 1;
  p.allowed = allowed.data();
  CHECK(score_batch_hard(p, cl.data(), n, ch.data(), nullptr, 1).ok(), "score with mask failed");
  bool only4 = true;
  for (auto c : ch) only4 &= c == 4;
  CHECK(only4, "allowed mask not honoured");
  std::fill(allowed.begin(), allowed.end(), 0);
  score_batch_hard(p, cl.data(), n, ch.data(), nullptr, 1);
  CHECK(ch[0] == -1, "no allowed LLM must give -1");
  p.allowed = nullptr;
  cl[3] = int32_t(k);
  CHECK(!score_batch_hard(p, cl.data(), n, ch.data(), nullptr, 1).ok(), "out-of-range cluster accepted");

  // the fused soft path (dot products and argmin per tile, several rows' argmins at once) against the unfused
  // argmin on the gamma it wrote: exact ties (duplicated psi rows, equal costs), near ties, a NaN row and an
  // infinite row, at row counts that leave every remainder of the multi-row argmin and of the tile
  Rng r(91);
  for (size_t mm : {1, 2, 5, 8, 9, 17, 24, 33}) {
    const size_t kk = 6;
    std::vector<float> ps(mm * kk), co(mm);
    for (size_t j = 0; j < mm; ++j) {
      co[j] = float(r.below(3)) * 0.5f;
      for (size_t c = 0; c < kk; ++c) ps[j * kk + c] = float(r.below(4)) * 0.25f;
    }
    if (mm > 2) {
      for (size_t c = 0; c < kk; ++c) ps[2 * kk + c] = ps[1 * kk + c];  // an exact twin
      co[2] = co[1];
    }
    Pool q{mm, kk, ps.data(), co.data(), 0.25f};
    for (size_t nn : {1, 3, 4, 5, 63, 64, 65, 131}) {
      std::vector<float> Zs(nn * kk), gs(nn * mm);
      std::vector<int32_t> fused(nn), ref(nn);
      for (size_t i = 0; i < nn; ++i)
        for (size_t c = 0; c < kk; ++c) Zs[i * kk + c] = float(r.below(3)) * 0.5f + (i % 3 == 1 ? 1e-7f * float(r.below(3)) : 0.0f);
      if (nn > 4) Zs[4 * kk] = __builtin_nanf("");
      if (nn > 3) Zs[3 * kk + 1] = __builtin_inff();
      CHECK(score_batch_soft(q, Zs.data(), nn, fused.data(), gs.data(), 1).ok(), "fused soft scoring failed (m %zu n %zu)", mm, nn);
      CHECK(argmin_batch(q, gs.data(), nn, ref.data(), 1).ok(), "argmin batch failed");
      size_t diff = 0;
      for (size_t i = 0; i < nn; ++i) diff += fused[i] != ref[i];
      CHECK(diff == 0, "fused soft argmin differs from the two-pass rule on %zu of %zu rows (m %zu)", diff, nn, mm);
    }
  }
  // scores too large for the caches are streamed out of a chunk in cache: the same scores and choices, bit for bit,
  // as small batches that write theirs in place, into a gamma that is not vector-aligned
  {
    const size_t mm = 33, kk = 6, nn = 70000;  // 9.2 MB of scores
    std::vector<float> ps(mm * kk), co(mm), Zs(nn * kk), big(nn * mm + 1), small(8 * mm);
    for (auto& v : ps) v = float(r.below(1000)) / 1000.0f;
    for (auto& v : co) v = float(r.below(5)) * 0.01f;
    for (auto& v : Zs) v = float(r.below(100)) / 100.0f;
    Pool q{mm, kk, ps.data(), co.data(), 0.5f};
    std::vector<int32_t> ch(nn), chs(8);
    CHECK(score_batch_soft(q, Zs.data(), nn, ch.data(), big.data() + 1, 2).ok(), "streamed soft scoring failed");
    size_t bad = 0;
    for (size_t at : {size_t(0), size_t(5), size_t(4096), size_t(33333), nn - 8}) {
      CHECK(score_batch_soft(q, Zs.data() + at * kk, 8, chs.data(), small.data(), 1).ok(), "small soft scoring failed");
      for (size_t i = 0; i < 8; ++i) {
        bad += chs[i] != ch[at + i];
        for (size_t j = 0; j < mm; ++j) bad += small[i * mm + j] != big[1 + (at + i) * mm + j];
      }
    }
    CHECK(bad == 0, "streamed scores differ from scores written in place in %zu values", bad);
  }
}


// Difficulty slope, evidence-first argmin, and the chunked vector route against the same pieces called one by one.
static void test_evidence_and_vectors() {
  const size_t m = 4, k = 3, d = 6, n = 41, ke = 5;
  auto psi_raw = random_matrix(m, k, 21);
  std::vector<float> psi(m * k), logit(m * k), cost = {0.4f, 0.1f, 0.2f, 0.3f};
  for (size_t i = 0; i < m * k; ++i) {
    psi[i] = 1.0f / (1.0f + std::exp(psi_raw[i]));
    logit[i] = std::log(psi[i] / (1.0f - psi[i]));
  }
  auto X = random_matrix(n, d, 22);
  auto C = random_matrix(k, d, 23);
  auto E = random_matrix(ke, d, 24);
  auto w = random_matrix(1, d, 25);
  std::vector<float> mu = {0.1f, -0.2f, 0.05f};
  std::vector<uint8_t> evidence(m * ke, 1);
  for (size_t c = 0; c < ke; c += 2) evidence[1 * ke + c] = 0;  // the cheapest LLM lacks evidence in even cells
  Pool p{m, k, psi.data(), cost.data(), 0.5f};  // m, k, psi, cost, lambda
  p.psi_logit = logit.data();
  p.slope = 1.7f;
  p.evidence = evidence.data();
  p.ke = ke;
  Difficulty diff;
  diff.w = w.data();
  diff.w0 = 0.05f;
  diff.mu = mu.data();
  std::vector<int32_t> start = {0, 2, 4, 5};  // cells nest in the k = 3 clusters
  EvidenceCells cells;
  cells.centroids = E.data();
  cells.ke = ke;
  cells.start = start.data();
  std::vector<int32_t> ch(n), cl(n), cell(n), ch_ref(n, -9), cl_ref(n), cell_ref(n);
  std::vector<float> dist(n), gam(n * m), chosen(n), gam_ref(n * m);
  RouteOutputs out;
  out.choice = ch.data();
  out.cluster = cl.data();
  out.distance = dist.data();
  out.gamma = gam.data();
  out.cell = cell.data();
  out.chosen = chosen.data();
  VectorRoute a;
  a.X = X.data();
  a.n = n;
  a.dim = d;
  a.centroids = C.data();
  a.diff = &diff;
  a.cells = &cells;
  a.chunk = 7;  // chunk boundaries inside the batch
  CHECK(route_vectors(a, p, out, 2).ok(), "route_vectors failed");
  CHECK(assign_nearest(X.data(), n, d, C.data(), k, cl_ref.data(), nullptr, 1).ok(), "assign failed");
  bool cells_ok = true;
  for (size_t i = 0; i < n; ++i) {
    const int32_t c = cl_ref[i];
    cells_ok &= assign_nearest(X.data() + i * d, 1, d, E.data() + start[c] * d, size_t(start[c + 1] - start[c]), &cell_ref[i], nullptr, 1).ok();
    cell_ref[i] += start[c];
  }
  CHECK(cells_ok, "assign cells failed");
  std::vector<float> r(n);
  for (size_t i = 0; i < n; ++i) {
    float dd = diff.w0;
    for (size_t t = 0; t < d; ++t) dd += w[t] * X[i * d + t];
    r[i] = dd - mu[cl_ref[i]];
  }
  CHECK(score_batch_hard(p, cl_ref.data(), n, ch_ref.data(), gam_ref.data(), 1, r.data(), cell_ref.data()).ok(), "score failed");
  CHECK(cl == cl_ref && cell == cell_ref && ch == ch_ref, "chunked vector route differs from assign + score");
  double maxerr = 0;
  for (size_t t = 0; t < n * m; ++t) maxerr = std::max(maxerr, double(std::fabs(gam[t] - gam_ref[t])));
  CHECK(maxerr < 1e-5, "vector route gamma differs by %g", maxerr);
  size_t bad = 0, evid = 0;
  for (size_t i = 0; i < n; ++i) {
    // reference: sigmoid(logit + slope r), evidence first, then the plain argmin
    int32_t best = -1;
    double bs = 1e30;
    for (int pass = 0; pass < 2 && best < 0; ++pass)
      for (size_t j = 0; j < m; ++j) {
        if (pass == 0 && !evidence[j * ke + cell_ref[i]]) continue;
        const double g = 1.0 / (1.0 + std::exp(-(logit[j * k + cl_ref[i]] + p.slope * r[i])));
        bad += std::fabs(g - gam[i * m + j]) > 1e-5;
        const double sc = g + p.lambda * cost[j];
        if (sc < bs) { bs = sc; best = int32_t(j); }
      }
    bad += best != ch[i];
    bad += std::fabs(chosen[i] - gam[i * m + ch[i]]) > 0;
    evid += ch[i] == 1 && cell_ref[i] % 2 == 0;
  }
  CHECK(bad == 0, "difficulty / evidence scoring disagrees with the reference %zu times", bad);
  CHECK(evid == 0, "an LLM without evidence was chosen over ones with evidence");
  // argmin alone, over the same predicted errors, makes the same decisions
  std::vector<int32_t> ch3(n);
  Pool q = p;
  q.psi_logit = nullptr;
  CHECK(argmin_batch(q, gam.data(), n, ch3.data(), 2, cell_ref.data()).ok() && ch3 == ch, "argmin_batch differs");
  // statuses, not crashes
  cell_ref[5] = int32_t(ke);
  CHECK(!argmin_batch(q, gam.data(), n, ch3.data(), 1, cell_ref.data()).ok(), "out-of-range cell accepted");
  Pool noDiff = p;
  CHECK(!route_vectors(VectorRoute{X.data(), n, d, C.data(), nullptr, nullptr, nullptr, &cells, 7}, noDiff, out, 1).ok(),
        "a slope without a difficulty model accepted");
  std::vector<int32_t> bad_start = {0, 3, 3, 5};  // a cluster without a cell
  cells.start = bad_start.data();
  CHECK(!route_vectors(a, p, out, 1).ok(), "evidence cell offsets that leave a cluster empty accepted");
}

static std::vector<std::string> synthetic_texts(size_t n) {
  const char* topics[3][6] = {{"integral", "derivative", "equation", "solve", "algebra", "number"},
                              {"python", "function", "return", "list", "loop", "code"},
                              {"history", "king", "war", "empire", "century", "battle"}};
  std::vector<std::string> t;
  Rng r(9);
  for (size_t i = 0; i < n; ++i) {
    std::string s;
    for (int w = 0; w < 12; ++w) s += std::string(topics[i % 3][r.below(6)]) + (w % 4 == 3 ? ". " : " ");
    t.push_back(s);
  }
  return t;
}

static void test_embed_and_route() {
  auto texts = synthetic_texts(300);
  std::vector<TextRef> refs;
  for (auto& s : texts) refs.push_back({s.data(), s.size()});
  EmbedConfig cfg;
  cfg.buckets_log2 = 12;
  cfg.dim = 16;
  Projection proj, proj2;
  EmbedFitReport rep, rep2;
  EmbedFitOptions fo;
  fo.threads = 1;
  Status st = fit_projection(refs.data(), refs.size(), cfg, fo, proj, rep);
  CHECK(st.ok(), "fit_projection: %s", st.message.c_str());
  fo.threads = 2;
  fit_projection(refs.data(), refs.size(), cfg, fo, proj2, rep2);
  CHECK(proj.q == proj2.q && proj.scale == proj2.scale, "fit_projection differs across thread counts");
  CHECK(rep.rank >= 3, "rank %zu", rep.rank);
  const size_t n = refs.size(), D = cfg.dim;
  std::vector<float> E(n * D), E2(n * D);
  CHECK(embed_batch(proj, refs.data(), n, E.data(), 1).ok(), "embed failed");
  embed_batch(proj, refs.data(), n, E2.data(), 2);
  CHECK(E == E2, "embedding differs across thread counts");
  double norm_err = 0, same = 0, other = 0;
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (size_t d = 0; d < D; ++d) s += double(E[i * D + d]) * E[i * D + d];
    norm_err = std::max(norm_err, std::fabs(s - 1.0));
  }
  for (size_t i = 0; i + 3 < n; ++i) {
    double a = 0, b = 0;
    for (size_t d = 0; d < D; ++d) {
      a += E[i * D + d] * E[(i + 3) * D + d];
      b += E[i * D + d] * E[(i + 1) * D + d];
    }
    same += a;
    other += b;
  }
  CHECK(norm_err < 1e-4, "embeddings not unit length (%g)", norm_err);
  CHECK(same > other + 0.3 * (n - 3), "same-topic similarity %g not above other-topic %g", same / (n - 3), other / (n - 3));
  // route_batch == embed + assign + score
  const size_t k = 3, m = 4;
  std::vector<float> C(k * D);
  std::vector<int32_t> A(n);
  KMeansResult kr;
  KMeansOptions ko;
  kmeans(E.data(), n, D, k, ko, C.data(), A.data(), kr);
  std::vector<float> psi = {0.1f, 0.5f, 0.9f, 0.5f, 0.1f, 0.9f, 0.9f, 0.9f, 0.1f, 0.3f, 0.3f, 0.3f}, cost = {1, 2, 3, 0.5f};
  Pool p{m, k, psi.data(), cost.data(), 0.05f};  // m, k, psi, cost, lambda
  std::vector<int32_t> ch(n), cl(n), ch_ref(n), cl_ref(n);
  std::vector<float> dist(n), dist_ref(n), g(n * m);
  RouteOutputs out{ch.data(), cl.data(), dist.data(), g.data()};
  CHECK(route_batch(proj, refs.data(), n, C.data(), p, out, 2).ok(), "route failed");
  assign_nearest(E.data(), n, D, C.data(), k, cl_ref.data(), dist_ref.data(), 1);
  score_batch_hard(p, cl_ref.data(), n, ch_ref.data(), nullptr, 1);
  CHECK(ch == ch_ref && cl == cl_ref, "fused route differs from embed+assign+score");
  {
    // the centroid norms given by the caller (as the router keeps them) give the same decisions and distances
    const std::vector<float> cn = centroid_norms(C.data(), k, D);
    std::vector<int32_t> ch2(n), cl2(n);
    std::vector<float> dist2(n), g2(n * m);
    CHECK(route_batch(proj, refs.data(), n, C.data(), p, {ch2.data(), cl2.data(), dist2.data(), g2.data()}, 2, nullptr, nullptr, cn.data()).ok(),
          "route with norms failed");
    CHECK(ch2 == ch && cl2 == cl && dist2 == dist && g2 == g, "route with given centroid norms differs");
    // and the reused per-thread feature extractor leaves no state behind: routing again gives the same
    std::vector<int32_t> ch3(n);
    CHECK(route_batch(proj, refs.data(), n, C.data(), p, {ch3.data(), cl2.data(), dist2.data(), g2.data()}, 1).ok() && ch3 == ch,
          "a second route (reused extractor) differs");
  }
  // empty and whitespace-only text: zero embedding, no crash
  std::string empty, spaces = "  \n\t ";
  TextRef odd[2] = {{empty.data(), 0}, {spaces.data(), spaces.size()}};
  std::vector<float> Z(2 * D, 1.0f);
  embed_batch(proj, odd, 2, Z.data(), 1);
  bool zeros = true;
  for (float v : Z) zeros &= v == 0.0f;
  CHECK(zeros, "empty text must embed to zeros");
  // feature spec spot check: "Ab  c" normalises to "ab c": tokens ab, c; one bigram; char 4-gram "ab c"
  FeatureExtractor fx(cfg);
  std::vector<Feature> f;
  std::string t = "  Ab  c ";
  fx.extract(t.data(), t.size(), f);
  CHECK(f.size() <= 4 && f.size() >= 1, "unexpected feature count %zu", f.size());
  uint32_t expect = ((fnv1a32(reinterpret_cast<const uint8_t*>("ab c"), 4) ^ 0x165667b1u) * 0x9E3779B1u) >> (32 - 12);
  bool found = false;
  for (auto& x : f) found |= x.bucket == expect;
  CHECK(found, "char window of the normalised text not found");
  CHECK(!fit_projection(refs.data(), 0, cfg, fo, proj, rep).ok(), "fit on no texts accepted");
}

static void test_mlp_gradient() {
  for (int head = 0; head < 2; ++head) {
    MlpConfig c;
    c.in = 5;
    c.hidden = {4, 3};
    c.head = head == 0 ? Head::Mixture : Head::Sigmoid;
    const size_t M = 2;
    c.out = head == 0 ? 3 : static_cast<uint32_t>(M);
    const size_t n = 7;
    auto X = random_matrix(n, c.in, 21);
    std::vector<float> Y(n * M), psi = {0.1f, 0.8f, 0.4f, 0.7f, 0.2f, 0.5f};
    Rng r(4);
    for (auto& y : Y) y = r.uniform() < 0.5 ? 1.0f : 0.0f;
    Y[3] = NAN;  // a missing outcome
    std::vector<float> P;
    mlp_init(c, 3, P);
    for (auto& p : P) p += 0.05f * static_cast<float>(r.normal());  // break BN's gamma = 1, beta = 0 symmetry
    std::vector<float> g;
    mlp_loss_grad(c, P, X.data(), Y.data(), n, M, psi.data(), &g);
    double worst = 0.0;
    size_t checked = 0;
    for (size_t i = 0; i < P.size(); ++i) {
      if (g[i] == 0.0f && std::fabs(P[i] - 1.0f) < 1e-12) continue;
      std::vector<float> a(P), b(P);
      const float h = 1e-3f;
      a[i] += h;
      b[i] -= h;
      double la = mlp_loss_grad(c, a, X.data(), Y.data(), n, M, psi.data(), nullptr);
      double lb = mlp_loss_grad(c, b, X.data(), Y.data(), n, M, psi.data(), nullptr);
      if (la == lb && g[i] == 0.0f) continue;  // running statistics: not trainable
      double fd = (la - lb) / (2.0 * h);
      double err = std::fabs(fd - g[i]) / std::max(1e-2, std::fabs(fd) + std::fabs(g[i]));
      worst = std::max(worst, err);
      checked++;
    }
    CHECK(checked > 50, "gradient check covered only %zu parameters", checked);
    CHECK(worst < 2e-2, "%s head: finite-difference gradient disagrees (worst relative error %g)", head == 0 ? "mixture" : "sigmoid", worst);
  }
  // training reduces the loss and is deterministic
  MlpConfig c;
  c.in = 8;
  c.hidden = {16, 16};
  c.out = 3;
  const size_t n = 300, M = 2;
  auto X = random_matrix(n, c.in, 5);
  std::vector<float> Y(n * M), psi = {0.05f, 0.95f, 0.5f, 0.95f, 0.05f, 0.5f};
  for (size_t i = 0; i < n; ++i) {
    Y[i * M] = X[i * c.in] > 0 ? 0.0f : 1.0f;
    Y[i * M + 1] = X[i * c.in] > 0 ? 1.0f : 0.0f;
  }
  MlpTrainOptions o;
  o.epochs = 20;
  o.patience = 100;
  std::vector<float> P1, P2;
  MlpTrainReport r1, r2;
  CHECK(mlp_train(c, P1, X.data(), Y.data(), n, M, psi.data(), nullptr, nullptr, 0, o, r1).ok(), "mlp_train failed");
  mlp_train(c, P2, X.data(), Y.data(), n, M, psi.data(), nullptr, nullptr, 0, o, r2);
  CHECK(P1 == P2, "training is not deterministic");
  CHECK(r1.train_loss.back() < 0.5f * r1.train_loss.front(), "training loss did not fall (%g -> %g)", r1.train_loss.front(), r1.train_loss.back());
  std::vector<float> Z(n * c.out);
  CHECK(mlp_forward(c, P1.data(), X.data(), n, Z.data(), 2).ok(), "forward failed");
  double rowsum = 0;
  for (size_t k = 0; k < c.out; ++k) rowsum += Z[k];
  CHECK(std::fabs(rowsum - 1.0) < 1e-5, "softmax rows must sum to 1");
  MlpConfig bad = c;
  bad.hidden = {0};
  CHECK(!mlp_validate(bad).ok(), "a zero-width layer was accepted");
}

// The op table: embed, score and the fused route through every usable backend at the CUDA chunk boundaries
// (32,768 prompts per route chunk, 65,536 rows per embed / score chunk: n = chunk - 1, chunk, chunk + 1), empty
// input, one prompt, K = 1 and K = 7, a dimension (100) that is not a multiple of the vector width; against the
// CPU's own kernels called directly (exact on the CPU; 1e-4 on the embeddings and ties by distance elsewhere).
// Assignment has its own table above. NaN and infinities are refused at the N-API boundary (test/kernels.test.ts).
static void test_op_table() {
  const size_t nmax = 65537;
  auto texts = synthetic_texts(nmax);
  std::vector<TextRef> refs;
  for (auto& t : texts) refs.push_back({t.data(), t.size()});
  EmbedConfig cfg;
  cfg.dim = 100;
  Projection proj;
  EmbedFitReport rep;
  EmbedFitOptions fo;
  CHECK(fit_projection(refs.data(), 2000, cfg, fo, proj, rep).ok(), "fit failed");
  proj.id = next_projection_id();
  const size_t D = cfg.dim, m = 5;
  std::vector<float> E(nmax * D);
  CHECK(embed_batch(proj, refs.data(), nmax, E.data(), 0).ok(), "reference embed failed");
  Engine eng;
  for (const std::string& backend : eng.names()) {
    if (!eng.select(backend).ok()) {
      std::printf("op table: %s skipped (unusable here)\n", backend.c_str());
      continue;
    }
    const bool exact = backend == "cpu";
    size_t bad = 0, cases = 0;
    for (size_t n : {size_t(0), size_t(1), size_t(32767), size_t(32768), size_t(32769), size_t(65535), size_t(65536), size_t(65537)}) {
      std::vector<float> e(n * D);
      ++cases;
      Status st = eng.run(EmbedArgs{&proj, refs.data(), n, e.data(), 0});
      double err = 0;
      for (size_t i = 0; i < n * D; ++i) err = std::max(err, double(std::fabs(e[i] - E[i])));
      if (!st.ok() || (exact ? err != 0 : err > 1e-4)) {
        ++bad;
        std::fprintf(stderr, "  %s embed n=%zu: %s, max error %g\n", backend.c_str(), n, st.message.c_str(), err);
      }
      for (size_t k : {size_t(1), size_t(7)}) {
        auto C = random_matrix(k, D, 300 + k);
        Rng r(k);
        std::vector<float> psi(m * k), cost(m);
        for (auto& v : psi) v = static_cast<float>(r.uniform());
        for (auto& v : cost) v = static_cast<float>(r.uniform());
        Pool p{m, k, psi.data(), cost.data(), 0.25f};
        std::vector<int32_t> cl(n), ch(n), ch_ref(n), rc(n), rcl(n), rc_ref(n), rcl_ref(n);
        std::vector<float> rd(n), rd_ref(n);
        ++cases;
        if (n) assign_nearest(E.data(), n, D, C.data(), k, cl.data(), nullptr, 1);
        score_batch_hard(p, cl.data(), n, ch_ref.data(), nullptr, 1);
        st = eng.run(ScoreHardArgs{&p, cl.data(), n, ch.data(), nullptr, 0});
        if (!st.ok() || ch != ch_ref) {
          ++bad;
          std::fprintf(stderr, "  %s score n=%zu k=%zu differs: %s\n", backend.c_str(), n, k, st.message.c_str());
        }
        ++cases;
        route_batch(proj, refs.data(), n, C.data(), p, {rc_ref.data(), rcl_ref.data(), rd_ref.data(), nullptr}, 0);
        st = eng.run(RouteArgs{&proj, refs.data(), n, C.data(), &p, {rc.data(), rcl.data(), rd.data(), nullptr}, 0});
        size_t diff = 0;
        for (size_t i = 0; i < n; ++i)
          diff += exact ? (rc[i] != rc_ref[i] || rcl[i] != rcl_ref[i] || rd[i] != rd_ref[i])
                        : ((rcl[i] != rcl_ref[i] && std::fabs(rd[i] - rd_ref[i]) > 1e-4) || (rcl[i] == rcl_ref[i] && rc[i] != rc_ref[i]));
        if (!st.ok() || diff) {
          ++bad;
          std::fprintf(stderr, "  %s route n=%zu k=%zu differs on %zu prompts: %s\n", backend.c_str(), n, k, diff, st.message.c_str());
        }
      }
    }
    CHECK(bad == 0, "op table on %s: %zu of %zu cases differ", backend.c_str(), bad, cases);
    std::printf("op table: %s, %zu cases (embed, score, route)\n", backend.c_str(), cases);
  }
}

// CUDA kernels against their CPU twins. Skipped (with the reason) where no device is usable. Real prompts, one
// per line, are read from $UNIROUTE_TEST_PROMPTS when set; synthetic ones otherwise.
static void test_cuda() {
  const cuda::DeviceInfo& d = cuda::probe();
  CHECK(d.available || !d.reason.empty(), "an unavailable CUDA backend must say why");
  if (!d.available) {
    std::printf("CUDA kernels: skipped (%s)\n", d.reason.c_str());
    return;
  }
  std::printf("CUDA device: %s (compute %d.%d)\n", d.name.c_str(), d.compute_major, d.compute_minor);
  std::vector<std::string> texts;
  if (const char* f = std::getenv("UNIROUTE_TEST_PROMPTS")) {
    std::ifstream in(f);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) texts.push_back(line);
  }
  if (texts.size() < 100) texts = synthetic_texts(3000);
  std::vector<TextRef> refs;
  for (auto& t : texts) refs.push_back({t.data(), t.size()});
  for (uint32_t dim : {256u, 100u}) {
    EmbedConfig cfg;
    cfg.dim = dim;
    Projection proj;
    EmbedFitReport rep;
    EmbedFitOptions fo;
    fit_projection(refs.data(), std::min<size_t>(refs.size(), 2000), cfg, fo, proj, rep);
    proj.id = next_projection_id();
    const size_t n = refs.size(), D = dim;
    std::vector<float> Ec(n * D), Eg(n * D);
    embed_batch(proj, refs.data(), n, Ec.data(), 0);
    Status st = cuda::embed_batch(proj, refs.data(), n, Eg.data(), 0);
    CHECK(st.ok(), "cuda embed: %s", st.message.c_str());
    double err = 0;
    for (size_t i = 0; i < n * D; ++i) err = std::max(err, double(std::fabs(Ec[i] - Eg[i])));
    CHECK(err < 1e-4, "dim %u: CUDA embedding differs from CPU by %g (tolerance 1e-4)", dim, err);
    const size_t k = 24, m = 40;
    std::vector<float> C(k * D);
    std::vector<int32_t> A(n);
    KMeansResult kr;
    KMeansOptions ko;
    kmeans(Ec.data(), n, D, k, ko, C.data(), A.data(), kr);
    std::vector<int32_t> ic(n), ig(n);
    std::vector<float> dc(n), dg(n);
    assign_nearest(Ec.data(), n, D, C.data(), k, ic.data(), dc.data(), 0);
    st = cuda::assign_nearest(Ec.data(), n, D, C.data(), k, ig.data(), dg.data());
    CHECK(st.ok(), "cuda assign: %s", st.message.c_str());
    size_t diff = 0;
    for (size_t i = 0; i < n; ++i)
      if (ic[i] != ig[i]) {
        auto dist2 = [&](int32_t c) {
          double s2 = 0;
          for (size_t j = 0; j < D; ++j) s2 += std::pow(double(Ec[i * D + j]) - C[c * D + j], 2);
          return s2;
        };
        if (std::fabs(dist2(ic[i]) - dist2(ig[i])) > 1e-4) diff++;  // not a float near-tie
      }
    CHECK(diff == 0, "CUDA assignment differs from CPU on %zu points", diff);
    Rng r(3);
    std::vector<float> psi(m * k), cost(m);
    for (auto& v : psi) v = static_cast<float>(r.uniform());
    for (auto& v : cost) v = static_cast<float>(r.uniform());
    std::vector<uint8_t> allowed(n * m);
    for (auto& v : allowed) v = r.uniform() < 0.7 ? 1 : 0;
    for (int masked = 0; masked < 2; ++masked) {
      Pool p{m, k, psi.data(), cost.data(), 0.3f};  // m, k, psi, cost, lambda
      if (masked) {
        p.allowed = allowed.data();
        p.allowed_per_row = true;
      }
      std::vector<int32_t> cc(n), cg(n), rc(n), rg(n), clc(n), clg(n);
      std::vector<float> gc(n * m), gg(n * m), rdc(n), rdg(n);
      score_batch_hard(p, ic.data(), n, cc.data(), gc.data(), 0);
      st = cuda::score_batch_hard(p, ic.data(), n, cg.data(), gg.data());
      CHECK(st.ok() && cc == cg && gc == gg, "CUDA scoring differs from CPU (masked %d): %s", masked, st.message.c_str());
      route_batch(proj, refs.data(), n, C.data(), p, {rc.data(), clc.data(), rdc.data(), nullptr}, 0);
      st = cuda::route_batch(proj, refs.data(), n, C.data(), p, {rg.data(), clg.data(), rdg.data(), nullptr}, 0);
      CHECK(st.ok(), "cuda route: %s", st.message.c_str());
      size_t rdiff = 0;
      for (size_t i = 0; i < n; ++i) rdiff += (clc[i] != clg[i] && std::fabs(rdc[i] - rdg[i]) > 1e-4) || (clc[i] == clg[i] && rc[i] != rg[i]);
      CHECK(rdiff == 0, "CUDA route differs from CPU on %zu prompts (masked %d)", rdiff, masked);
    }
  }
  {
    // two threads routing at once on the device (each has its own streams and buffers; no device-wide lock)
    EmbedConfig cfg;
    cfg.dim = 128;
    Projection proj;
    EmbedFitReport rep;
    EmbedFitOptions fo;
    fit_projection(refs.data(), std::min<size_t>(refs.size(), 2000), cfg, fo, proj, rep);
    proj.id = next_projection_id();
    const size_t n = refs.size(), k = 16, m = 12;
    auto C = random_matrix(k, 128, 77);
    Rng r(9);
    std::vector<float> psi(m * k), cost(m);
    for (auto& v : psi) v = static_cast<float>(r.uniform());
    for (auto& v : cost) v = static_cast<float>(r.uniform());
    Pool p{m, k, psi.data(), cost.data(), 0.2f};
    std::vector<int32_t> want(n), wc(n);
    std::vector<float> wd(n);
    route_batch(proj, refs.data(), n, C.data(), p, {want.data(), wc.data(), wd.data(), nullptr}, 0);
    std::vector<int32_t> got[2] = {std::vector<int32_t>(n), std::vector<int32_t>(n)}, gc[2] = {std::vector<int32_t>(n), std::vector<int32_t>(n)};
    std::vector<float> gd[2] = {std::vector<float>(n), std::vector<float>(n)};
    Status sts[2];
    std::thread th[2];
    for (int t = 0; t < 2; ++t)
      th[t] = std::thread([&, t] { sts[t] = cuda::route_batch(proj, refs.data(), n, C.data(), p, {got[t].data(), gc[t].data(), gd[t].data(), nullptr}, 1); });
    for (auto& x : th) x.join();
    for (int t = 0; t < 2; ++t) {
      size_t diff = 0;
      for (size_t i = 0; i < n; ++i) diff += (gc[t][i] != wc[i] && std::fabs(gd[t][i] - wd[i]) > 1e-4) || (gc[t][i] == wc[i] && got[t][i] != want[i]);
      CHECK(sts[t].ok() && diff == 0, "concurrent CUDA route (thread %d) differs from CPU on %zu prompts: %s", t, diff, sts[t].message.c_str());
    }
  }
  Projection big;
  big.cfg.dim = 1024;
  big.q.assign(big.cfg.buckets() * 1024, 0);
  big.scale.assign(big.cfg.buckets(), 0.0f);
  std::vector<float> o(1024);
  CHECK(!cuda::embed_batch(big, nullptr, 0, o.data(), 0).ok(), "dim 1024 must be refused on the GPU");
  cuda::release();
}

// The instruction sets: selection (unknown and unsupported names refused with the reason, the active set kept),
// and every supported variant's kernels against the others and against plain references: embeddings bit-identical
// between the fused-multiply-add variants (same terms, same order) and within 1e-5 of the baseline; the argmin
// kernel exactly the scalar rule on rows full of ties, with allowed and evidence masks; dot products within float
// tolerance of double; assignment ids equal except float near-ties.
static void test_isa() {
  const Isa before = isa_active();
  Status st = isa_select("sse9");
  CHECK(st.code == Code::InvalidArgument && st.message.find("sse9") != std::string::npos, "an unknown ISA name must be refused: %s", st.message.c_str());
  CHECK(isa_active() == before, "a refused ISA must leave the active one");
  for (Isa isa : {Isa::Avx2, Isa::Avx512})
    if (!isa_supported(isa)) {
      st = isa_select(isa_name(isa));
      CHECK(st.code == Code::Unsupported && st.message.find("cannot run here") != std::string::npos,
            "an ISA this CPU lacks must be refused with the reason: %s", st.message.c_str());
      CHECK(isa_active() == before, "a refused ISA must leave the active one");
    }
  CHECK(isa_supported(Isa::Baseline), "the baseline always runs");
  CHECK(isa_select("auto").ok() && isa_active() == isa_best() && !isa_forced(), "auto must pick the best set");
  const std::vector<Isa> isas = isa_supported_list();

  // embeddings
  auto texts = synthetic_texts(500);
  texts.push_back(std::string(20000, 'x') + " tail words here");  // many features: several batches
  std::vector<TextRef> refs;
  for (auto& t : texts) refs.push_back({t.data(), t.size()});
  for (uint32_t dim : {16u, 100u, 256u}) {
    EmbedConfig cfg;
    cfg.buckets_log2 = 12;
    cfg.dim = dim;
    Projection proj;
    EmbedFitReport rep;
    EmbedFitOptions fo;
    CHECK(fit_projection(refs.data(), 300, cfg, fo, proj, rep).ok(), "fit failed");
    const size_t n = refs.size();
    std::vector<std::vector<float>> E;
    for (Isa isa : isas) {
      isa_select(isa_name(isa));
      E.emplace_back(n * dim);
      CHECK(embed_batch(proj, refs.data(), n, E.back().data(), 2).ok(), "embed failed on %s", isa_name(isa));
    }
    for (size_t a = 1; a < isas.size(); ++a) {
      double err = 0;
      for (size_t i = 0; i < n * dim; ++i) err = std::max(err, double(std::fabs(E[a][i] - E[0][i])));
      CHECK(err < 1e-5, "embed dim %u: %s differs from baseline by %g", dim, isa_name(isas[a]), err);
      if (isas[a] != Isa::Baseline && isas[a - 1] != Isa::Baseline)
        CHECK(E[a] == E[a - 1], "embed dim %u: %s and %s must agree exactly", dim, isa_name(isas[a]), isa_name(isas[a - 1]));
    }
  }

  // the argmin kernel (through Scorer, evidence first) on rows of ties, with allowed and evidence masks, at
  // lambda = 0, an ordinary one and one so large that the costs swamp the errors
  Rng r(77);
  for (size_t m : {1, 2, 3, 7, 8, 9, 16, 17, 33, 71, 130}) {
    std::vector<float> g(m), cost(m), psi(m, 0.0f);
    std::vector<uint8_t> allowed(m), need(m * 3);
    for (int rep = 0; rep < 150; ++rep) {
      const float lambda = rep % 3 == 0 ? 0.0f : rep % 3 == 1 ? float(r.uniform()) : 1e32f;
      for (size_t j = 0; j < m; ++j) {
        g[j] = float(r.below(4)) * 0.25f + (rep % 2 ? 1e-7f * float(r.below(3)) : 0.0f);  // exact and near ties
        cost[j] = float(r.below(3));
        allowed[j] = r.below(4) != 0;
        for (size_t t = 0; t < 3; ++t) need[j * 3 + t] = r.below(3) != 0;
      }
      for (int mask = 0; mask < 4; ++mask) {
        const uint8_t* al = mask & 1 ? allowed.data() : nullptr;
        const uint8_t* ne = mask & 2 ? need.data() + 1 : nullptr;
        auto rule = [&](const uint8_t* nd) {
          int32_t want = -1;
          double bs = 0;
          float bc = 0;
          for (size_t j = 0; j < m; ++j) {
            if ((al && !al[j]) || (nd && !nd[j * 3])) continue;
            const double s = double(g[j]) + double(lambda) * double(cost[j]);
            if (want < 0 || s < bs || (s == bs && cost[j] < bc)) {
              want = int32_t(j);
              bs = s;
              bc = cost[j];
            }
          }
          return want;
        };
        int32_t want = ne ? rule(ne) : -1;
        if (want < 0) want = rule(nullptr);
        Pool p{m, 1, psi.data(), cost.data(), lambda};
        if (ne) {
          p.evidence = need.data();
          p.ke = 3;
        }
        for (Isa isa : isas) {
          isa_select(isa_name(isa));
          const Scorer sc(p);
          const int32_t got = sc.argmin(g.data(), al, ne ? 1 : -1);
          CHECK(got == want, "argmin %s m=%zu lambda %g mask %d: %d, want %d", isa_name(isa), m, lambda, mask, got, want);
        }
      }
    }
  }

  // the same on continuous scores (the one-pass proof of a unique minimiser decides most rows), at every lambda
  // scale, and with scores a few float steps apart (the proof must fail there and the exact pass decide)
  for (size_t m : {1, 5, 8, 17, 71, 118, 300}) {
    std::vector<float> g(m), cost(m), psi(m, 0.0f);
    for (int rep = 0; rep < 300; ++rep) {
      const float lambda = rep % 4 == 0 ? 0.0f : rep % 4 == 1 ? 0.3f : rep % 4 == 2 ? 1e3f : 3e-9f;
      for (size_t j = 0; j < m; ++j) {
        g[j] = rep % 5 == 4 ? 0.5f + float(r.below(5)) * 6e-8f : float(r.uniform()) * (rep % 2 ? 1.0f : 1e6f);
        cost[j] = float(r.uniform()) * 1e-3f;
      }
      int32_t want = -1;
      double bs = 0;
      float bc = 0;
      for (size_t j = 0; j < m; ++j) {
        const double sv = double(g[j]) + double(lambda) * double(cost[j]);
        if (want < 0 || sv < bs || (sv == bs && cost[j] < bc)) {
          want = int32_t(j);
          bs = sv;
          bc = cost[j];
        }
      }
      Pool p{m, 1, psi.data(), cost.data(), lambda};
      for (Isa isa : isas) {
        isa_select(isa_name(isa));
        const Scorer sc(p);
        const int32_t got = sc.argmin(g.data(), nullptr, -1);
        CHECK(got == want, "argmin %s m=%zu lambda %g rep %d: %d, want %d", isa_name(isa), m, lambda, rep, got, want);
      }
    }
  }

  // dot products and assignment, every block width of every variant
  for (size_t k : {1, 4, 5, 8, 9, 16, 17, 30, 33, 64}) {
    const size_t n = 77, d = 45;
    auto X = random_matrix(n, d, 500 + k), C = random_matrix(k, d, 600 + k);
    std::vector<std::vector<int32_t>> ids;
    for (Isa isa : isas) {
      const KernelTable& kt = kernels_for(isa);
      const PackedCentroids P = pack_centroids(C.data(), k, d, nullptr, &kt);
      std::vector<float> dots(n * k), dist(n);
      std::vector<int32_t> idx(n);
      dot_rows(P, X.data(), 0, n, dots.data(), k);
      assign_rows(P, X.data(), 0, n, idx.data(), dist.data());
      double err = 0;
      for (size_t i = 0; i < n; ++i)
        for (size_t c = 0; c < k; ++c) {
          double ref = 0;
          for (size_t j = 0; j < d; ++j) ref += double(X[i * d + j]) * C[c * d + j];
          err = std::max(err, std::fabs(ref - dots[i * k + c]));
        }
      CHECK(err < 1e-4, "dot_rows %s k=%zu: error %g", isa_name(isa), k, err);
      ids.push_back(idx);
    }
    for (size_t a = 1; a < ids.size(); ++a) {
      size_t diff = 0;
      for (size_t i = 0; i < n; ++i) diff += ids[a][i] != ids[0][i];
      CHECK(diff <= 1, "assign k=%zu: %s and baseline differ on %zu of %zu rows", k, isa_name(isas[a]), diff, n);
    }
  }
  // one vector's nearest centroid (nearest_one, routing a prompt): against a double reference, dimensions around
  // the eight partial sums, centroid counts around the groups of four; the FMA variants agree exactly
  for (size_t d : {1, 7, 8, 9, 45, 256})
    for (size_t k : {1, 3, 4, 5, 16, 34}) {
      auto X = random_matrix(40, d, 900 + d), C = random_matrix(k, d, 950 + k);
      const std::vector<float> cn = centroid_norms(C.data(), k, d);
      std::vector<std::vector<float>> dists;
      for (Isa isa : isas) {
        std::vector<float> got(40);
        for (size_t i = 0; i < 40; ++i) {
          int32_t c = -1;
          kernels_for(isa).nearest(X.data() + i * d, d, C.data(), cn.data(), k, &c, &got[i]);
          std::vector<double> ref(k);
          for (size_t t = 0; t < k; ++t) {
            double s = 0;
            for (size_t j = 0; j < d; ++j) s += (double(X[i * d + j]) - C[t * d + j]) * (double(X[i * d + j]) - C[t * d + j]);
            ref[t] = std::sqrt(s);
          }
          const size_t want = std::min_element(ref.begin(), ref.end()) - ref.begin();
          CHECK(c >= 0 && size_t(c) < k, "nearest %s d=%zu k=%zu: index %d", isa_name(isa), d, k, c);
          // a different index only on a near tie, and the distance to float accuracy
          CHECK(size_t(c) == want || std::fabs(ref[c] - ref[want]) < 1e-4, "nearest %s d=%zu k=%zu row %zu: %d, want %zu", isa_name(isa), d, k, i, c, want);
          CHECK(std::fabs(got[i] - ref[want]) < 1e-3 * (1.0 + ref[want]), "nearest %s d=%zu k=%zu: distance %g, want %g", isa_name(isa), d, k, got[i], ref[want]);
        }
        if (isa != Isa::Baseline) dists.push_back(got);
      }
      for (size_t a = 1; a < dists.size(); ++a) CHECK(dists[a] == dists[0], "nearest d=%zu k=%zu: the FMA variants differ", d, k);
    }
  // soft scores (the fused tiles of score_soft_rows, each variant's own tile shapes) against a double reference, at
  // every block width and row remainder of every variant: gamma to float accuracy
  for (size_t kk : {size_t(6), size_t(30)})
    for (size_t mm : {1, 4, 5, 8, 9, 12, 16, 17, 24, 33, 48, 71, 118}) {
      auto Ps = random_matrix(mm, kk, 700 + mm), Zs = random_matrix(131, kk, 800 + kk);
      std::vector<float> co(mm);
      for (size_t j = 0; j < mm; ++j) co[j] = 0.01f * float(j % 7);
      Pool q{mm, kk, Ps.data(), co.data(), 0.5f};
      for (Isa isa : isas) {
        isa_select(isa_name(isa));
        for (size_t nn : {1, 3, 4, 5, 9, 64, 131}) {
          std::vector<float> g(nn * mm);
          std::vector<int32_t> ch(nn);
          CHECK(score_batch_soft(q, Zs.data(), nn, ch.data(), g.data(), 1).ok(), "soft scoring failed");
          double err = 0;
          for (size_t i = 0; i < nn; ++i)
            for (size_t j = 0; j < mm; ++j) {
              double ref = 0;
              for (size_t c = 0; c < kk; ++c) ref += double(Zs[i * kk + c]) * Ps[j * kk + c];
              err = std::max(err, std::fabs(ref - g[i * mm + j]) / (1.0 + std::fabs(ref)));
            }
          CHECK(err < 1e-5, "soft scores %s k=%zu m=%zu n=%zu: error %g", isa_name(isa), kk, mm, nn, err);
        }
      }
    }
  // the embedder's projection against a double reference: dimensions around every chunk width, feature counts
  // around the batch and span sizes, weights over forty binary orders (many exponent groups, odd ones), negative
  // and zero scales, a weight that underflows to a subnormal, a repeated bucket; the error relative to the norm
  // (the baseline rounds each weight to 15 significant bits, the others add float products)
  {
    Rng rng(4242);
    const size_t B = 4096;
    for (size_t D : {1, 7, 16, 31, 32, 33, 64, 100, 256}) {
      std::vector<int8_t> q(B * D);
      for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(rng.next() % 255) - 127);
      std::vector<float> scale(B);
      for (size_t b = 0; b < B; ++b) {
        const double u = rng.uniform();
        scale[b] = b % 11 == 0 ? 0.0f : static_cast<float>((b % 13 == 0 ? -1.0 : 1.0) * std::ldexp(0.5 + u, static_cast<int>(b % 40) - 30));
      }
      scale[5] = 1e-40f;  // times a weight of 1: a subnormal product, done apart
      for (size_t nf : {0, 1, 2, 3, 63, 64, 65, 129, 1023, 1024, 1025, 2500}) {
        std::vector<Feature> f(nf);
        for (size_t i = 0; i < nf; ++i) f[i] = {static_cast<uint32_t>(i == 7 ? 5 : rng.next() % B), static_cast<float>(1.0 + std::log(1.0 + double(rng.next() % 5)))};
        std::vector<double> ref(D, 0.0);
        for (const Feature& x : f)
          for (size_t d = 0; d < D; ++d) ref[d] += double(x.weight) * double(scale[x.bucket]) * q[x.bucket * D + d];
        double nrm = 0;
        for (double v : ref) nrm += v * v;
        nrm = std::sqrt(nrm);
        for (Isa isa : isas) {
          std::vector<float> out(D, -1.0f);
          kernels_for(isa).project(q.data(), scale.data(), f.data(), nf, D, out.data());
          double err = 0;
          for (size_t d = 0; d < D; ++d) err = std::max(err, std::fabs((nrm > 0 ? ref[d] / nrm : 0.0) - out[d]));
          CHECK(err < (isa == Isa::Baseline ? 2e-5 : 1e-6), "project %s D=%zu nf=%zu: error %g", isa_name(isa), D, nf, err);
        }
      }
    }
  }
  isa_select(isa_forced() ? isa_name(before) : "auto");
  isa_select(isa_name(before));
}

// Every test runs once per instruction set this CPU supports (UNIROUTE_ISA=baseline|avx2|avx512: that one only).
int main() {
  const char* forced = std::getenv("UNIROUTE_ISA");
  std::vector<Isa> isas = isa_supported_list();
  if (forced && *forced) {
    Status st = isa_select_from_env();
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.message.c_str());
      return 2;
    }
    isas = {isa_active()};
  }
  std::printf("CPU features: %s; kernels: ", isa_cpu_features().c_str());
  for (Isa isa : isas) std::printf("%s ", isa_name(isa));
  std::printf("\n");
  test_cuda();
  test_mlp_gradient();
  test_eigen();
  test_worker_pool();
  test_backend_registry();
  test_isa();
  for (Isa isa : isas) {
    isa_select(isa_name(isa));
    const int failed_before = g_failed;
    test_assign();
    test_assign_cases();
    test_op_table();
    test_kmeans();
    test_score();
    test_evidence_and_vectors();
    test_embed_and_route();
    std::printf("kernels %s: %s\n", isa_name(isa), g_failed == failed_before ? "every op case passed" : "FAILED");
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
