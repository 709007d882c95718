// Built only where OpenBLAS (or another CBLAS) is found: times the engine's centroid-distance and scoring shapes
// against cblas_sgemm on the same shapes, in one process. One JSON line per measurement on stdout.
//   uniroute_bench_blas [n] [d] [k] [m] [threads]
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../core/assign.h"
#include "../core/common.h"
#include "../core/score.h"

using namespace uniroute;
using Clock = std::chrono::steady_clock;

template <typename F>
double seconds_per_call(F&& f, double min_seconds = 0.5) {
  f();
  int reps = 0;
  auto t0 = Clock::now();
  double el = 0;
  do {
    f();
    ++reps;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < min_seconds);
  return el / reps;
}

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::atoi(argv[1]) : 65536, d = argc > 2 ? std::atoi(argv[2]) : 256;
  const size_t k = argc > 3 ? std::atoi(argv[3]) : 30, m = argc > 4 ? std::atoi(argv[4]) : 71;
  const int threads = argc > 5 ? std::atoi(argv[5]) : 0;
  Rng r(1);
  std::vector<float> X(n * d), C(k * d), out(n * k), psi(m * k), cost(m), Z(n * k), G(n * m);
  for (auto& v : X) v = static_cast<float>(r.normal());
  for (auto& v : C) v = static_cast<float>(r.normal());
  for (auto& v : psi) v = static_cast<float>(r.uniform());
  for (auto& v : cost) v = static_cast<float>(r.uniform());
  for (auto& v : Z) v = static_cast<float>(r.uniform());
  std::vector<int32_t> idx(n), choice(n);
  std::vector<float> dist(n);
  const double t_assign = seconds_per_call([&] { assign_nearest(X.data(), n, d, C.data(), k, idx.data(), dist.data(), threads); });
  const double t_sgemm = seconds_per_call([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(k), static_cast<int>(d), 1.0f,
                X.data(), static_cast<int>(d), C.data(), static_cast<int>(d), 0.0f, out.data(), static_cast<int>(k));
  });
  Pool p{m, k, psi.data(), cost.data(), 0.1f};  // m, k, psi, cost, lambda
  const double t_score = seconds_per_call([&] { score_batch_soft(p, Z.data(), n, choice.data(), G.data(), threads); });
  const double t_sgemm2 = seconds_per_call([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), 1.0f,
                Z.data(), static_cast<int>(k), psi.data(), static_cast<int>(k), 0.0f, G.data(), static_cast<int>(m));
  });
  const double fl1 = 2.0 * n * d * k, fl2 = 2.0 * n * k * m;
  std::printf("{\"name\":\"assign-vs-sgemm\",\"backend\":\"cpu\",\"batch\":%zu,\"threads\":%d,\"shape\":\"%zux%zu by %zux%zu\",\"prompts_per_s\":%.0f,\"gflops\":%.2f,\"sgemm_gflops\":%.2f,\"vs_sgemm\":%.3f}\n",
              n, threads <= 0 ? default_threads() : threads, n, d, d, k, n / t_assign, fl1 / t_assign / 1e9, fl1 / t_sgemm / 1e9, t_sgemm / t_assign);
  std::printf("{\"name\":\"score-soft-vs-sgemm\",\"backend\":\"cpu\",\"batch\":%zu,\"threads\":%d,\"shape\":\"%zux%zu by %zux%zu\",\"prompts_per_s\":%.0f,\"gflops\":%.2f,\"sgemm_gflops\":%.2f,\"vs_sgemm\":%.3f}\n",
              n, threads <= 0 ? default_threads() : threads, n, k, k, m, n / t_score, fl2 / t_score / 1e9, fl2 / t_sgemm2 / 1e9, t_sgemm2 / t_score);
  return 0;
}
