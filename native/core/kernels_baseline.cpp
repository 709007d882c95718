// The portable variant of the hot kernels: the compiler's default target (x86-64: SSE2, 128-bit vectors, no FMA;
// elsewhere 128-bit NEON and the like). Every CPU runs it. See kernels.inc.
#define UNIROUTE_KERNEL_NS kernels_baseline
#define UNIROUTE_KERNEL_NAME "baseline"
#define UNIROUTE_KERNEL_LANES 4
#include "kernels.inc"
