// The hot kernels, compiled once per instruction set: a portable baseline (the target's default: SSE2 on x86-64),
// AVX2 + FMA and AVX-512 (F, VL, BW, DQ), from the one source native/core/kernels.inc. isa.h picks one table at
// run time, by what the CPU supports (or UNIROUTE_ISA).
//
// Each variant's object is compiled with its own -m flags, so it must not share an inline function with the rest
// of the program: two copies of a C++ inline (std::vector's, std::min's) compiled for different instruction sets
// are merged by the linker into one, which could put an AVX-512 body under baseline code. So the kernels see only
// this header (plain types, no std:: templates) and define everything else with internal linkage; a ctest
// (scripts/check-kernel-objects.sh) fails when a variant's object defines a weak (mergeable) symbol.
#pragma once
#include <cstddef>
#include <cstdint>

namespace uniroute {

// One distinct hashed feature of a text (embed.h).
struct Feature {
  uint32_t bucket;
  float weight;  // 1 + ln(count)
};

// Centroids packed for the blocked kernels: `blocks` blocks of `width` columns, each d x width (transposed,
// zero-padded); norms[blocks * width] hold ||c||^2, +inf in the padding. The width is the kernel table's choice.
struct PackedView {
  const float* data;
  const float* norms;
  size_t k, d, blocks, width;
};

// The pool's per-LLM terms of a score, for the argmin kernel: exact ones in double, and float ones for a first
// pass that finds the candidates (every LLM whose float score is within its error bound of the lowest).
constexpr size_t kScorePad = 96;  // a multiple of every block width of every variant (8, 12, 16, 24, 32, 48)
struct ScoreTerms {
  const double* lc;    // lambda * cost_j
  const double* cost;  // cost_j
  const float* lcf;    // lc_j rounded to float; padded to a multiple of kScorePad with +inf
  const float* err;    // the error bound's constant part for j (+inf: always a candidate); padded with 0
  size_t m;
  float gap;           // 2^-18 max |lcf_j| + 4e-37 (+inf when some err_j is): argmin_unique's constant
};

struct KernelTable {
  const char* name;  // "baseline", "avx2", "avx512"
  // The packing width for k centroids (a multiple of the vector width).
  size_t (*block_width)(size_t k);
  // Rows b .. e - 1 of X (n x d): the nearest packed centroid (ties to the lowest index) and, where dist is not
  // null, its Euclidean distance; with `at` not null, row i is X + at[i] * d (read in place).
  void (*assign_rows)(const PackedView& P, const float* X, const size_t* at, size_t b, size_t e, int32_t* idx, float* dist);
  // out[(i - b) * ld + c] = x_i . c_c for rows b .. e - 1 and every centroid c < P.k (ld >= P.k); with `at` not
  // null, row i is X + at[i] * d (a gathered subset of X's rows, read in place).
  void (*dot_rows)(const PackedView& P, const float* X, const size_t* at, size_t b, size_t e, float* out, size_t ld);
  // ||x||^2 with eight partial sums.
  float (*squared_norm)(const float* x, size_t d);
  // ||a - b||^2 in double, eight partial sums (the k-means objective).
  double (*sqdist)(const float* a, const float* b, size_t d);
  // The nearest of k row-major centroids C (k x d, cn their squared norms) to one vector x, ties to the lowest
  // index; dist (not null) gets its Euclidean distance. Each dot product in squared_norm's fixed order.
  void (*nearest)(const float* x, size_t d, const float* C, const float* cn, size_t k, int32_t* idx, float* dist);
  // out[D] = the L2-normalised sum over the features of weight * scale[bucket] * q[bucket * D ...] (all zeros when
  // that sum is zero). Rows are read ahead of use (prefetched).
  void (*project)(const int8_t* q, const float* scale, const Feature* feats, size_t nf, size_t D, float* out);
  // score_j = gamma_j + lambda * cost_j in double over the m values of one row: the index of the lowest score
  // among the LLMs allowed (allowed[j], null: all) and needed (need[j * need_stride], null: all), ties to the lower
  // cost, then the lower index; -1 when none qualifies. The pool's part is set up once (Scorer, score.cpp).
  int32_t (*argmin_scores)(const float* g, const ScoreTerms& t, const uint8_t* allowed, const uint8_t* need,
                           size_t need_stride);
  // Soft scores of rows b .. e - 1 of Z (n x P.d memberships) against psi packed as P.k = m "centroids" of P.d
  // values: gamma rows (G + (i - b) * m; G may not be null) and choice[i], the argmin of gamma_i + lambda * cost
  // with no allowed set and no evidence (argmin_scores's rule, exactly).
  // With `out` not null, each tile's rows of G are also copied to out + i * m with non-temporal stores as the tile
  // is done (then a store fence at the end).
  void (*score_soft_rows)(const PackedView& P, const float* Z, size_t b, size_t e, float* G, const ScoreTerms& t,
                          int32_t* choice, float* out);
};

namespace kernels_baseline {
extern const KernelTable table;
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(UNIROUTE_NO_X86_VARIANTS)
#define UNIROUTE_X86_VARIANTS 1
namespace kernels_avx2 {
extern const KernelTable table;
}
namespace kernels_avx512 {
extern const KernelTable table;
}
#endif

}  // namespace uniroute
