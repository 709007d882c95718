// Which variant of the hot kernels (kernels.h) runs: the best instruction set this CPU supports, or the one forced
// by isa_select (UNIROUTE_ISA=baseline|avx2|avx512 through the addon, the native tests and the benches). One
// binary carries every variant, so a build made on one machine runs at its speed on another and never executes an
// instruction the CPU lacks. The choice is process-wide (it describes the CPU, not a caller).
#pragma once
#include <string>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace uniroute {

enum class Isa { Baseline = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// Compiled into this build, and run by this CPU and its operating system (AVX2: AVX2 + FMA; AVX-512: F, VL, BW,
// DQ, with the OS saving their registers).
bool isa_supported(Isa isa);
// Every supported set, the baseline first.
std::vector<Isa> isa_supported_list();
Isa isa_best();
// The set in use: the best one, unless isa_select chose another.
Isa isa_active();
// Whether the active set was chosen by isa_select (not "auto").
bool isa_forced();
// "auto" (the best), "baseline", "avx2" or "avx512". An unknown name is InvalidArgument; a set this CPU or this
// build lacks is Unsupported, with the reason; either way the active set is left as it was.
Status isa_select(const std::string& name);
// isa_select($UNIROUTE_ISA) when it is set and not empty; Ok otherwise.
Status isa_select_from_env();
// What this CPU reports of the features the variants need, e.g. "sse2 avx2 fma avx512f avx512vl avx512bw avx512dq".
std::string isa_cpu_features();

// The kernels of the active set, and of a given one (which must be supported).
const KernelTable& kernels();
const KernelTable& kernels_for(Isa isa);

}  // namespace uniroute
