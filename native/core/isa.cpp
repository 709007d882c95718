#include "isa.h"

#include <atomic>
#include <cstdlib>

namespace uniroute {

namespace {

#if defined(UNIROUTE_X86_VARIANTS)
struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false, avx512vl = false, avx512bw = false, avx512dq = false;
  CpuFeatures() {
    __builtin_cpu_init();  // needed when called before libgcc's own constructor has run
    avx2 = __builtin_cpu_supports("avx2");
    fma = __builtin_cpu_supports("fma");
    avx512f = __builtin_cpu_supports("avx512f");
    avx512vl = __builtin_cpu_supports("avx512vl");
    avx512bw = __builtin_cpu_supports("avx512bw");
    avx512dq = __builtin_cpu_supports("avx512dq");
  }
};
const CpuFeatures& cpu() {
  static const CpuFeatures f;
  return f;
}
#endif

// -1 until first use: then the best set, or the one selected
std::atomic<int> g_active{-1};
std::atomic<bool> g_forced{false};

const KernelTable* table_of(Isa isa) {
  switch (isa) {
#if defined(UNIROUTE_X86_VARIANTS)
    case Isa::Avx512: return &kernels_avx512::table;
    case Isa::Avx2: return &kernels_avx2::table;
#endif
    default: return &kernels_baseline::table;
  }
}

// Why this CPU (or build) cannot run the set; empty when it can.
std::string missing(Isa isa) {
  if (isa == Isa::Baseline) return "";
#if defined(UNIROUTE_X86_VARIANTS)
  const CpuFeatures& f = cpu();
  std::string m;
  auto need = [&](bool have, const char* name) {
    if (!have) m += (m.empty() ? "" : ", ") + std::string(name);
  };
  need(f.avx2, "avx2");
  need(f.fma, "fma");
  if (isa == Isa::Avx512) {
    need(f.avx512f, "avx512f");
    need(f.avx512vl, "avx512vl");
    need(f.avx512bw, "avx512bw");
    need(f.avx512dq, "avx512dq");
  }
  return m.empty() ? "" : "this CPU lacks " + m;
#else
  return "this build has only the baseline kernels (not an x86-64 build with GCC or Clang)";
#endif
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "baseline";
  }
}

bool isa_supported(Isa isa) { return missing(isa).empty(); }

std::vector<Isa> isa_supported_list() {
  std::vector<Isa> v;
  for (Isa i : {Isa::Baseline, Isa::Avx2, Isa::Avx512})
    if (isa_supported(i)) v.push_back(i);
  return v;
}

Isa isa_best() {
  static const Isa best = isa_supported(Isa::Avx512) ? Isa::Avx512 : isa_supported(Isa::Avx2) ? Isa::Avx2 : Isa::Baseline;
  return best;
}

Isa isa_active() {
  int a = g_active.load(std::memory_order_relaxed);
  if (a < 0) {
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(isa_best()));
    a = g_active.load();
  }
  return static_cast<Isa>(a);
}

bool isa_forced() { return g_forced.load(); }

Status isa_select(const std::string& name) {
  Isa isa;
  if (name == "auto") {
    g_active.store(static_cast<int>(isa_best()));
    g_forced.store(false);
    return Status::Ok();
  } else if (name == "baseline") {
    isa = Isa::Baseline;
  } else if (name == "avx2") {
    isa = Isa::Avx2;
  } else if (name == "avx512") {
    isa = Isa::Avx512;
  } else {
    return Status::Invalid("Expected \"auto\", \"baseline\", \"avx2\" or \"avx512\" for the instruction set but received \"" + name + "\"");
  }
  const std::string why = missing(isa);
  if (!why.empty()) return {Code::Unsupported, std::string("the ") + isa_name(isa) + " kernels cannot run here: " + why};
  g_active.store(static_cast<int>(isa));
  g_forced.store(true);
  return Status::Ok();
}

Status isa_select_from_env() {
  const char* v = std::getenv("UNIROUTE_ISA");
  if (!v || !*v) return Status::Ok();
  Status st = isa_select(v);
  if (!st.ok()) st.message = "UNIROUTE_ISA: " + st.message;
  return st;
}

std::string isa_cpu_features() {
#if defined(UNIROUTE_X86_VARIANTS)
  const CpuFeatures& f = cpu();
  std::string s = "sse2";
  if (f.avx2) s += " avx2";
  if (f.fma) s += " fma";
  if (f.avx512f) s += " avx512f";
  if (f.avx512vl) s += " avx512vl";
  if (f.avx512bw) s += " avx512bw";
  if (f.avx512dq) s += " avx512dq";
  return s;
#else
  return "";
#endif
}

const KernelTable& kernels() { return *table_of(isa_active()); }

const KernelTable& kernels_for(Isa isa) { return *table_of(isa_supported(isa) ? isa : Isa::Baseline); }

}  // namespace uniroute
