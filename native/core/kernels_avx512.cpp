// The AVX-512 variant of the hot kernels: compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq -mavx2 -mfma
// -mprefer-vector-width=512 (CMakeLists.txt, binding.gyp) and run only where the CPU reports all of them
// (isa.cpp). 512-bit vectors, 32 registers. See kernels.inc.
#include "kernels.h"
#if defined(UNIROUTE_X86_VARIANTS)
#if !defined(__AVX512F__) || !defined(__AVX512VL__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__) || !defined(__FMA__)
#error "kernels_avx512.cpp must be compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma"
#endif
#define UNIROUTE_KERNEL_NS kernels_avx512
#define UNIROUTE_KERNEL_NAME "avx512"
#define UNIROUTE_KERNEL_LANES 16
#include "kernels.inc"
#endif
