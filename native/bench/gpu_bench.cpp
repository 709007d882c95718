// The engine's throughput, CPU (all threads) against CUDA (where a device is usable), on the same input: embed,
// assign, score and the fused route at batch sizes 1k, 64k and 1M prompts (scripts/gpu-check.sh). Prompts are real
// ones from $UNIROUTE_TEST_PROMPTS (one per line, repeated to the batch size) or synthetic; D = 256, K = 30,
// 71 LLMs. Prints one table row per (op, batch, backend) and the CUDA-vs-CPU agreement of each op; exits 1 when
// CUDA disagrees with the CPU. Needs no Node.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../core/assign.h"
#include "../core/embed.h"
#include "../core/isa.h"
#include "../core/route.h"
#include "../core/score.h"
#include "../cuda/backend.h"

using namespace uniroute;
using clk = std::chrono::steady_clock;

static double seconds_of(const std::function<Status()>& f, int reps) {
  Status st = f();  // warm-up (and device caches)
  if (!st.ok()) {
    std::fprintf(stderr, "  failed: %s\n", st.message.c_str());
    return -1;
  }
  const auto t0 = clk::now();
  for (int r = 0; r < reps; ++r) f();
  return std::chrono::duration<double>(clk::now() - t0).count() / reps;
}

int main(int argc, char** argv) {
  size_t max_batch = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> base;
  if (const char* f = std::getenv("UNIROUTE_TEST_PROMPTS")) {
    std::ifstream in(f);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) base.push_back(line);
  }
  if (base.size() < 100) {
    const char* words[] = {"integral", "python", "empire", "solve", "loop", "king", "sum", "class", "war", "prime",
                           "function", "battle", "equation", "list", "century", "number", "return", "treaty"};
    Rng r(3);
    for (int i = 0; i < 5000; ++i) {
      std::string s = "Question: ";
      for (int w = 0; w < 60; ++w) s += std::string(words[r.below(18)]) + (w % 9 == 8 ? ". " : " ");
      base.push_back(s);
    }
  }
  std::vector<TextRef> base_refs;
  for (auto& t : base) base_refs.push_back({t.data(), t.size()});
  EmbedConfig cfg;
  Projection proj;
  EmbedFitReport rep;
  EmbedFitOptions fo;
  fo.threads = threads;
  Status st = fit_projection(base_refs.data(), std::min<size_t>(base.size(), 5000), cfg, fo, proj, rep);
  if (!st.ok()) {
    std::fprintf(stderr, "fit_projection: %s\n", st.message.c_str());
    return 2;
  }
  const size_t D = cfg.dim, K = 30, M = 71;
  Rng r(7);
  std::vector<float> C(K * D), psi(M * K), cost(M);
  for (auto& v : C) v = static_cast<float>(r.normal()) * 0.1f;
  for (auto& v : psi) v = static_cast<float>(r.uniform());
  for (size_t j = 0; j < M; ++j) cost[j] = 1e-4f * float(j + 1);
  Pool pool{M, K, psi.data(), cost.data(), 50.0f};  // m, k, psi, cost, lambda

  const cuda::DeviceInfo& dev = cuda::probe();
  if (Status st = isa_select_from_env(); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.message.c_str());
    return 2;
  }
  std::printf("# uniroute engine: CPU (%d threads, %s kernels; the CPU reports %s) against CUDA\n", threads,
              isa_name(isa_active()), isa_cpu_features().c_str());
  std::printf("# CUDA: %s\n", dev.available ? (dev.name + " (compute " + std::to_string(dev.compute_major) + "." + std::to_string(dev.compute_minor) + ")").c_str()
                                            : ("not usable: " + dev.reason).c_str());
  std::printf("# prompts: %s, mean %zu chars; D = %zu, K = %zu, %zu LLMs\n", std::getenv("UNIROUTE_TEST_PROMPTS") ? "real" : "synthetic",
              [&] { size_t s = 0; for (auto& t : base) s += t.size(); return s / base.size(); }(), D, K, M);
  std::printf("| op | batch | backend | prompts/s | CUDA/CPU |\n|---|---|---|---|---|\n");
  int disagreements = 0;
  for (size_t n : {size_t(1000), size_t(65536), size_t(1000000)}) {
    if (n > max_batch) break;
    std::vector<TextRef> refs(n);
    for (size_t i = 0; i < n; ++i) refs[i] = base_refs[i % base_refs.size()];
    const int reps = n <= 1000 ? 20 : n <= 65536 ? 3 : 1;
    std::vector<float> E(n * D), Eg(n * D), dist(n), distg(n), gam(n * M), gamg(n * M);
    std::vector<int32_t> cl(n), clg(n), ch(n), chg(n), rch(n), rchg(n), rcl(n), rclg(n);
    struct Op {
      const char* name;
      std::function<Status()> cpu, gpu;
      std::function<size_t()> differ;  // after both ran: how many prompts disagree
    };
    std::vector<Op> ops = {
        {"embed", [&] { return embed_batch(proj, refs.data(), n, E.data(), threads); },
         [&] { return cuda::embed_batch(proj, refs.data(), n, Eg.data(), threads); },
         [&] {
           size_t bad = 0;
           for (size_t i = 0; i < n * D; ++i) bad += std::fabs(E[i] - Eg[i]) > 1e-4f;
           return bad;
         }},
        {"assign", [&] { return assign_nearest(E.data(), n, D, C.data(), K, cl.data(), dist.data(), threads); },
         [&] { return cuda::assign_nearest(E.data(), n, D, C.data(), K, clg.data(), distg.data()); },
         [&] {
           size_t bad = 0;
           for (size_t i = 0; i < n; ++i) bad += cl[i] != clg[i];
           return bad;
         }},
        {"score", [&] { return score_batch_hard(pool, cl.data(), n, ch.data(), gam.data(), threads); },
         [&] { return cuda::score_batch_hard(pool, cl.data(), n, chg.data(), gamg.data()); },
         [&] {
           size_t bad = 0;
           for (size_t i = 0; i < n; ++i) bad += ch[i] != chg[i];
           return bad;
         }},
        {"route", [&] { return route_batch(proj, refs.data(), n, C.data(), pool, {rch.data(), rcl.data(), dist.data(), nullptr}, threads); },
         [&] { return cuda::route_batch(proj, refs.data(), n, C.data(), pool, {rchg.data(), rclg.data(), distg.data(), nullptr}, threads); },
         [&] {
           size_t bad = 0;
           for (size_t i = 0; i < n; ++i) bad += rch[i] != rchg[i];
           return bad;
         }},
    };
    for (auto& op : ops) {
      const double tc = seconds_of(op.cpu, reps);
      std::printf("| %s | %zu | cpu | %.0f | |\n", op.name, n, tc > 0 ? n / tc : 0.0);
      if (!dev.available) continue;
      const double tg = seconds_of(op.gpu, reps);
      const size_t bad = tg > 0 ? op.differ() : n;
      std::printf("| %s | %zu | cuda | %.0f | %.2fx |\n", op.name, n, tg > 0 ? n / tg : 0.0, tg > 0 && tc > 0 ? tc / tg : 0.0);
      std::printf("  %s agreement at %zu: %zu of %zu %s differ\n", op.name, n, bad, op.name == std::string("embed") ? n * D : n,
                  op.name == std::string("embed") ? "values (tolerance 1e-4)" : "decisions");
      // float near-ties may flip a few assignments; more than 0.1 % is a failure
      if (bad * 1000 > (op.name == std::string("embed") ? n * D : n)) ++disagreements;
    }
  }
  cuda::release();
  if (disagreements) std::printf("CUDA disagrees with the CPU on %d op(s)\n", disagreements);
  return disagreements ? 1 : 0;
}
