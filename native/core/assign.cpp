#include "assign.h"

#include "isa.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace uniroute {

std::vector<float> centroid_norms(const float* C, size_t k, size_t d) {
  // routing computes these on every call unless given, so they showed when routing one prompt at a time
  std::vector<float> cn(k);
  for (size_t c = 0; c < k; ++c) cn[c] = squared_norm(C + c * d, d);
  return cn;
}

void nearest_one(const float* x, size_t d, const float* C, const float* c_norm2, size_t k, int32_t* idx, float* dist) {
  kernels().nearest(x, d, C, c_norm2, k, idx, dist);
}

float squared_norm(const float* x, size_t d) { return kernels().squared_norm(x, d); }

PackedCentroids pack_centroids(const float* C, size_t k, size_t d, const float* c_norm2, const KernelTable* kt) {
  PackedCentroids p;
  p.kt = kt ? kt : &kernels();
  p.k = k;
  p.d = d;
  p.width = p.kt->block_width(k);
  const size_t W = p.width;
  p.blocks = (k + W - 1) / W;
  p.data.assign(p.blocks * d * W, 0.0f);
  p.norms.assign(p.blocks * W, std::numeric_limits<float>::infinity());
  const std::vector<float> cn = c_norm2 ? std::vector<float>() : centroid_norms(C, k, d);
  for (size_t c = 0; c < k; ++c) {
    const size_t b = c / W, l = c % W;
    float* block = p.data.data() + b * d * W;
    for (size_t j = 0; j < d; ++j) block[j * W + l] = C[c * d + j];
    p.norms[c] = c_norm2 ? c_norm2[c] : cn[c];
  }
  return p;
}

void assign_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, int32_t* idx, float* dist) {
  if (b < e) P.kt->assign_rows(P.view(), X, nullptr, b, e, idx, dist);
}

void assign_rows_at(const PackedCentroids& P, const float* X, const size_t* at, size_t count, int32_t* idx, float* dist) {
  if (count > 0) P.kt->assign_rows(P.view(), X, at, 0, count, idx, dist);
}

void dot_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, float* out, size_t ld) {
  if (b < e) P.kt->dot_rows(P.view(), X, nullptr, b, e, out, ld);
}

void dot_rows_at(const PackedCentroids& P, const float* X, const size_t* at, size_t count, float* out, size_t ld) {
  if (count > 0) P.kt->dot_rows(P.view(), X, at, 0, count, out, ld);
}

Status assign_nearest(const float* X, size_t n, size_t d, const float* C, size_t k, int32_t* idx, float* dist,
                      int threads) {
  if (k == 0) return Status::Invalid("there must be at least one centroid");
  const PackedCentroids P = pack_centroids(C, k, d);
  return parallel_for(n, threads, 256, [&](size_t b, size_t e, int) {
    assign_rows(P, X, b, e, idx, dist);
    return Status::Ok();
  });
}

}  // namespace uniroute
