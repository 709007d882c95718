// Built only where OpenBLAS (or another CBLAS) is found: times the engine's blocked kernels against cblas_sgemm on
// the same shapes, in one process, with the same thread count: nearest-centroid assignment at K = 30 (the routing
// shape) and K = 64 (a k-means Lloyd step), and soft scoring (n x K memberships by K x M error vectors, argmin
// included). The two sides run in alternating rounds and each keeps its fastest round, so a burst of load from
// another process on the machine lands on both, not on one. One JSON line per shape on stdout, naming the kernels'
// instruction set (UNIROUTE_ISA=baseline|avx2|avx512 forces one) and OpenBLAS's core (OPENBLAS_CORETYPE forces one).
//   uniroute_bench_blas [n] [d] [k] [m] [threads] [rounds]
#include <cblas.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../core/assign.h"
#include "../core/common.h"
#include "../core/isa.h"
#include "../core/score.h"

extern "C" {
// OpenBLAS's own extensions (declared here: not every cblas.h has them)
void openblas_set_num_threads(int num_threads) __attribute__((weak));
char* openblas_get_corename(void) __attribute__((weak));
}

using namespace uniroute;
using Clock = std::chrono::steady_clock;

// On one thread, calls are timed by the thread's CPU clock: time the scheduler gave to other processes on a busy
// machine is not counted (OpenBLAS on one thread runs in the caller's thread too). On more, by the wall clock.
static bool g_cpu_clock = false;
static double now_seconds() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

// The fastest time per call of f over one round of at least min_seconds (wall).
template <typename F>
double round_time(F&& f, double min_seconds) {
  double best = 1e300, el = 0;
  const auto t0 = Clock::now();
  do {
    const double a = now_seconds();
    f();
    const double b = now_seconds();
    best = std::min(best, b - a);
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < min_seconds);
  return best;
}

// ours and theirs in alternating rounds; the fastest call of each
template <typename A, typename B>
std::pair<double, double> race(A&& ours, B&& theirs, int rounds, double per_round) {
  ours();
  theirs();
  double to = 1e300, tt = 1e300;
  for (int r = 0; r < rounds; ++r) {
    to = std::min(to, round_time(ours, per_round));
    tt = std::min(tt, round_time(theirs, per_round));
  }
  return {to, tt};
}

int main(int argc, char** argv) {
  Status st = isa_select_from_env();
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.message.c_str());
    return 2;
  }
  const size_t n = argc > 1 ? std::atoi(argv[1]) : 65536, d = argc > 2 ? std::atoi(argv[2]) : 256;
  const size_t k = argc > 3 ? std::atoi(argv[3]) : 30, m = argc > 4 ? std::atoi(argv[4]) : 71;
  const int threads = argc > 5 && std::atoi(argv[5]) > 0 ? std::atoi(argv[5]) : default_threads();
  const int rounds = argc > 6 ? std::max(1, std::atoi(argv[6])) : 5;
  const double per_round = 0.1;
  g_cpu_clock = threads == 1;
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
  const std::string core = openblas_get_corename ? openblas_get_corename() : "unknown";
  const size_t k2 = 64;
  Rng r(1);
  std::vector<float> X(n * d), C(k2 * d), out(n * k2), psi(m * k), cost(m), Z(n * k), G(n * m);
  for (auto& v : X) v = static_cast<float>(r.normal());
  for (auto& v : C) v = static_cast<float>(r.normal());
  for (auto& v : psi) v = static_cast<float>(r.uniform());
  for (auto& v : cost) v = static_cast<float>(r.uniform());
  for (auto& v : Z) v = static_cast<float>(r.uniform());
  std::vector<int32_t> idx(n), choice(n);
  std::vector<float> dist(n);
  auto line = [&](const char* name, const char* shape_fmt, size_t a, size_t b, size_t c, size_t e, double flops,
                  std::pair<double, double> t) {
    char shape[96];
    std::snprintf(shape, sizeof shape, shape_fmt, a, b, c, e);
    std::printf("{\"name\":\"%s\",\"backend\":\"cpu\",\"isa\":\"%s\",\"blas_core\":\"%s\",\"batch\":%zu,\"threads\":%d,"
                "\"clock\":\"%s\",\"shape\":\"%s\",\"prompts_per_s\":%.0f,\"gflops\":%.2f,\"sgemm_gflops\":%.2f,\"vs_sgemm\":%.3f}\n",
                name, isa_name(isa_active()), core.c_str(), n, threads, g_cpu_clock ? "thread-cpu" : "wall", shape, n / t.first, flops / t.first / 1e9,
                flops / t.second / 1e9, t.second / t.first);
    std::fflush(stdout);
  };
  for (size_t kk : {k, k2}) {
    auto t = race([&] { assign_nearest(X.data(), n, d, C.data(), kk, idx.data(), dist.data(), threads); },
                  [&] {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(kk),
                                static_cast<int>(d), 1.0f, X.data(), static_cast<int>(d), C.data(), static_cast<int>(d),
                                0.0f, out.data(), static_cast<int>(kk));
                  },
                  rounds, per_round);
    line(kk == k2 ? "assign-k64-vs-sgemm" : "assign-vs-sgemm", "%zux%zu by %zux%zu", n, d, d, kk, 2.0 * n * d * kk, t);
  }
  Pool p{m, k, psi.data(), cost.data(), 0.1f};  // m, k, psi, cost, lambda
  // the scores written (gamma, as explain asks for them), then the choices only (as routing asks for them, and as
  // assign gives the nearest centroid without its n x k dot products: the n x m scores stay in a chunk in cache);
  // sgemm writes its n x m product both times
  for (const bool written : {true, false}) {
    auto t = race([&] { score_batch_soft(p, Z.data(), n, choice.data(), written ? G.data() : nullptr, threads); },
                  [&] {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m),
                                static_cast<int>(k), 1.0f, Z.data(), static_cast<int>(k), psi.data(), static_cast<int>(k),
                                0.0f, G.data(), static_cast<int>(m));
                  },
                  rounds, per_round);
    line(written ? "score-soft-vs-sgemm" : "score-choices-vs-sgemm", "%zux%zu by %zux%zu", n, k, k, m, 2.0 * n * k * m, t);
  }
  return 0;
}
