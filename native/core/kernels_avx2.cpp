// The AVX2 variant of the hot kernels: compiled with -mavx2 -mfma (CMakeLists.txt, binding.gyp) and run only where
// the CPU reports AVX2 and FMA (isa.cpp). 256-bit vectors, 16 registers. See kernels.inc.
#include "kernels.h"
#if defined(UNIROUTE_X86_VARIANTS)
#if !defined(__AVX2__) || !defined(__FMA__)
#error "kernels_avx2.cpp must be compiled with -mavx2 -mfma"
#endif
#define UNIROUTE_KERNEL_NS kernels_avx2
#define UNIROUTE_KERNEL_NAME "avx2"
#define UNIROUTE_KERNEL_LANES 8
#include "kernels.inc"
#endif
