#include "assign.h"

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
  float xx = 0.0f;
  for (size_t j = 0; j < d; ++j) xx += x[j] * x[j];
  float best = std::numeric_limits<float>::infinity();
  int32_t arg = 0;
  auto consider = [&](size_t c, float dot) {
    const float d2 = xx - 2.0f * dot + c_norm2[c];
    if (d2 < best) {
      best = d2;
      arg = static_cast<int32_t>(c);
    }
  };
  size_t c = 0;
  // four centroids per pass over x: x is loaded once, four independent accumulators
  for (; c + 4 <= k; c += 4) {
    const float* c0 = C + c * d;
    const float* c1 = c0 + d;
    const float* c2 = c1 + d;
    const float* c3 = c2 + d;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (size_t j = 0; j < d; ++j) {
      const float xj = x[j];
      s0 += xj * c0[j];
      s1 += xj * c1[j];
      s2 += xj * c2[j];
      s3 += xj * c3[j];
    }
    consider(c, s0);
    consider(c + 1, s1);
    consider(c + 2, s2);
    consider(c + 3, s3);
  }
  for (; c < k; ++c) {
    const float* cc = C + c * d;
    float dot = 0.0f;
    for (size_t j = 0; j < d; ++j) dot += x[j] * cc[j];
    consider(c, dot);
  }
  *idx = arg;
  if (dist) *dist = std::sqrt(std::max(0.0f, best));
}

namespace {

// The blocked kernel: centroids packed in blocks of W = 16 x PANELS (zero-padded, transposed to d x W), a tile of R
// prompts against one block held in R x PANELS vector accumulators, so each centroid value loaded is used R times
// and each prompt value W times, as a GEMM micro-kernel does. K <= 16 takes blocks of 16 and tiles of 8 prompts,
// larger K blocks of 32 and tiles of 4 (8 accumulators either way). GCC/Clang vector extensions: the compiler maps
// a 16-float vector to one AVX-512 register, two AVX ones or four SSE ones.
typedef float vf16 __attribute__((vector_size(64)));
constexpr size_t kLanes = 16;

// by reference, not by value: a 64-byte vector returned by value changes the ABI where AVX-512 is off (-Wpsabi)
inline void load16(vf16& v, const float* p) { std::memcpy(&v, p, sizeof v); }

// dots[r * W + c] = x_r . block centroid c, for the R prompts x[0..R).
template <size_t R, size_t PANELS>
inline void tile_dots(const float* const* x, size_t d, const float* block, float* dots) {
  constexpr size_t W = kLanes * PANELS;
  vf16 acc[R][PANELS];
  for (size_t r = 0; r < R; ++r)
    for (size_t p = 0; p < PANELS; ++p) acc[r][p] = vf16{};
  for (size_t j = 0; j < d; ++j) {
    vf16 c[PANELS];
    for (size_t p = 0; p < PANELS; ++p) load16(c[p], block + j * W + p * kLanes);
    for (size_t r = 0; r < R; ++r) {
      const float xv = x[r][j];
      for (size_t p = 0; p < PANELS; ++p) acc[r][p] += xv * c[p];
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t p = 0; p < PANELS; ++p) std::memcpy(dots + r * W + p * kLanes, &acc[r][p], sizeof(vf16));
}

// Rows b .. e - 1 in tiles of R against every block; visit(i, R, blk, dots) sees each tile's dots (R x W).
template <size_t R, size_t PANELS, typename Visit>
inline void tiles(const PackedCentroids& P, const float* X, size_t b, size_t e, Visit&& visit) {
  constexpr size_t W = kLanes * PANELS;
  const size_t d = P.d;
  float dots[R * W];
  for (size_t i = b; i < e; i += R) {
    const size_t n = std::min(R, e - i);
    const float* xs[R];
    for (size_t r = 0; r < R; ++r) xs[r] = X + (i + std::min(r, n - 1)) * d;
    for (size_t blk = 0; blk < P.blocks; ++blk) {
      const float* block = P.data.data() + blk * d * W;
      if (n == R)
        tile_dots<R, PANELS>(xs, d, block, dots);
      else
        for (size_t r = 0; r < n; ++r) tile_dots<1, PANELS>(xs + r, d, block, dots + r * W);
      visit(i, n, blk, static_cast<const float*>(dots));
    }
  }
}

template <size_t R, size_t PANELS>
void assign_tiles(const PackedCentroids& P, const float* X, size_t b, size_t e, int32_t* idx, float* dist) {
  constexpr size_t W = kLanes * PANELS;
  float best[R];
  int32_t arg[R];
  tiles<R, PANELS>(P, X, b, e, [&](size_t i, size_t n, size_t blk, const float* dots) {
    if (blk == 0)
      for (size_t r = 0; r < R; ++r) {
        best[r] = std::numeric_limits<float>::infinity();
        arg[r] = 0;
      }
    // per prompt: the nearest centroid over every block, ties to the lowest index
    const float* cn = P.norms.data() + blk * W;
    for (size_t r = 0; r < n; ++r) {
      const float* dr = dots + r * W;
      for (size_t c = 0; c < W; ++c) {
        const float v = cn[c] - 2.0f * dr[c];
        if (v < best[r]) {
          best[r] = v;
          arg[r] = static_cast<int32_t>(blk * W + c);
        }
      }
    }
    if (blk + 1 == P.blocks)
      for (size_t r = 0; r < n; ++r) {
        idx[i + r] = arg[r];
        if (dist) dist[i + r] = std::sqrt(std::max(0.0f, squared_norm(X + (i + r) * P.d, P.d) + best[r]));
      }
  });
}

template <size_t R, size_t PANELS>
void dot_tiles(const PackedCentroids& P, const float* X, size_t b, size_t e, float* out, size_t ld) {
  constexpr size_t W = kLanes * PANELS;
  tiles<R, PANELS>(P, X, b, e, [&](size_t i, size_t n, size_t blk, const float* dots) {
    const size_t c0 = blk * W, cnt = std::min(W, P.k - c0);
    for (size_t r = 0; r < n; ++r) std::memcpy(out + (i - b + r) * ld + c0, dots + r * W, cnt * sizeof(float));
  });
}

}  // namespace

float squared_norm(const float* x, size_t d) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t j = 0;
  for (; j + 8 <= d; j += 8)
    for (size_t l = 0; l < 8; ++l) acc[l] += x[j + l] * x[j + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < d; ++j) s += x[j] * x[j];
  return s;
}

PackedCentroids pack_centroids(const float* C, size_t k, size_t d, const float* c_norm2) {
  PackedCentroids p;
  p.k = k;
  p.d = d;
  p.width = k <= kLanes ? kLanes : 2 * kLanes;
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
  if (P.width == kLanes)
    assign_tiles<8, 1>(P, X, b, e, idx, dist);
  else
    assign_tiles<4, 2>(P, X, b, e, idx, dist);
}

void dot_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, float* out, size_t ld) {
  if (P.width == kLanes)
    dot_tiles<8, 1>(P, X, b, e, out, ld);
  else
    dot_tiles<4, 2>(P, X, b, e, out, ld);
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
