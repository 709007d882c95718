// Nearest-centroid assignment (squared Euclidean through ||x||^2 - 2 x.c + ||c||^2).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace uniroute {

// ||c_k||^2 for each of the k centroids (k x d).
std::vector<float> centroid_norms(const float* C, size_t k, size_t d);

// c_norm2[k] must hold ||c_k||^2. Ties go to the lowest index. dist receives the Euclidean distance.
void nearest_one(const float* x, size_t d, const float* C, const float* c_norm2, size_t k, int32_t* idx, float* dist);

// Centroids packed for the blocked kernels of one instruction set (kernels.h; the active one unless given): blocks
// of `width` columns (the kernels' choice for k: 4 to 32), transposed, zero-padded; padded norms are +inf.
struct PackedCentroids {
  std::vector<float> data, norms;
  size_t k = 0, d = 0, blocks = 0, width = 0;
  const KernelTable* kt = nullptr;  // the kernels it was packed for (and that run it)
  PackedView view() const { return {data.data(), norms.data(), k, d, blocks, width}; }
};
PackedCentroids pack_centroids(const float* C, size_t k, size_t d, const float* c_norm2 = nullptr,
                               const KernelTable* kt = nullptr);

// Rows b .. e - 1 of X (n x d) against packed centroids: idx and (when not null) dist for those rows, at GEMM speed.
void assign_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, int32_t* idx, float* dist);
// The same for the rows X + at[i] * d, i = 0 .. count - 1 (read in place): idx[i], dist[i].
void assign_rows_at(const PackedCentroids& P, const float* X, const size_t* at, size_t count, int32_t* idx, float* dist);

// out[(i - b) * ld + c] = x_i . c_c for rows b .. e - 1 and every centroid c < P.k (ld >= P.k).
void dot_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, float* out, size_t ld);
// The same for the rows X + at[i] * d, i = 0 .. count - 1 (a subset of X, read in place): out[i * ld + c].
void dot_rows_at(const PackedCentroids& P, const float* X, const size_t* at, size_t count, float* out, size_t ld);

// ||x||^2 with eight partial sums (vectorises without -ffast-math), by the active kernels.
float squared_norm(const float* x, size_t d);

Status assign_nearest(const float* X, size_t n, size_t d, const float* C, size_t k, int32_t* idx, float* dist,
                      int threads);

}  // namespace uniroute
