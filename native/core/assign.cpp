#include "assign.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace uniroute {

std::vector<float> centroid_norms(const float* C, size_t k, size_t d) {
  // eight partial sums per row (a float sum in one accumulator does not vectorise); routing computes these on
  // every call, so they showed when routing one prompt at a time
  std::vector<float> cn(k);
  for (size_t c = 0; c < k; ++c) {
    const float* r = C + c * d;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= d; j += 8)
      for (size_t l = 0; l < 8; ++l) acc[l] += r[j + l] * r[j + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < d; ++j) s += r[j] * r[j];
    cn[c] = s;
  }
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

// The blocked kernel: centroids packed in blocks of kBlock (zero-padded, transposed to d x kBlock), a tile of kRows
// prompts against one block held in kRows x kBlock / 16 vector accumulators, so each centroid value loaded is used
// kRows times and each prompt value kBlock times, as a GEMM micro-kernel does. GCC/Clang vector extensions: the
// compiler maps a 16-float vector to one AVX-512 register, two AVX ones or four SSE ones.
typedef float vf16 __attribute__((vector_size(64)));
constexpr size_t kLanes = 16;
constexpr size_t kPanels = 2;
constexpr size_t kBlock = kLanes * kPanels;  // centroids per block
constexpr size_t kRows = 4;                  // prompts per tile

// by reference, not by value: a 64-byte vector returned by value changes the ABI where AVX-512 is off (-Wpsabi)
inline void load16(vf16& v, const float* p) { std::memcpy(&v, p, sizeof v); }

// dots[r * kBlock + c] = x_r . block centroid c, for the R prompts x[0..R).
template <size_t R>
inline void tile_dots(const float* const* x, size_t d, const float* block, float* dots) {
  vf16 acc[R][kPanels];
  for (size_t r = 0; r < R; ++r)
    for (size_t p = 0; p < kPanels; ++p) acc[r][p] = vf16{};
  for (size_t j = 0; j < d; ++j) {
    vf16 c[kPanels];
    for (size_t p = 0; p < kPanels; ++p) load16(c[p], block + j * kBlock + p * kLanes);
    for (size_t r = 0; r < R; ++r) {
      const float xv = x[r][j];
      for (size_t p = 0; p < kPanels; ++p) acc[r][p] += xv * c[p];
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t p = 0; p < kPanels; ++p) std::memcpy(dots + r * kBlock + p * kLanes, &acc[r][p], sizeof(vf16));
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

namespace {
inline float sqnorm(const float* x, size_t d) { return squared_norm(x, d); }
}  // namespace

PackedCentroids pack_centroids(const float* C, size_t k, size_t d, const float* c_norm2) {
  PackedCentroids p;
  p.k = k;
  p.d = d;
  p.blocks = (k + kBlock - 1) / kBlock;
  p.data.assign(p.blocks * d * kBlock, 0.0f);
  p.norms.assign(p.blocks * kBlock, std::numeric_limits<float>::infinity());
  const std::vector<float> cn = c_norm2 ? std::vector<float>() : centroid_norms(C, k, d);
  for (size_t c = 0; c < k; ++c) {
    const size_t b = c / kBlock, l = c % kBlock;
    float* block = p.data.data() + b * d * kBlock;
    for (size_t j = 0; j < d; ++j) block[j * kBlock + l] = C[c * d + j];
    p.norms[c] = c_norm2 ? c_norm2[c] : cn[c];
  }
  return p;
}

void assign_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, int32_t* idx, float* dist) {
  const size_t d = P.d;
  float dots[kRows * kBlock];
  size_t i = b;
  float best[kRows];
  int32_t arg[kRows];
  for (; i < e; i += kRows) {
    const size_t R = std::min(kRows, e - i);
    const float* xs[kRows];
    for (size_t r = 0; r < kRows; ++r) xs[r] = X + (i + std::min(r, R - 1)) * d;
    for (size_t r = 0; r < kRows; ++r) {
      best[r] = std::numeric_limits<float>::infinity();
      arg[r] = 0;
    }
    for (size_t blk = 0; blk < P.blocks; ++blk) {
      const float* block = P.data.data() + blk * d * kBlock;
      if (R == kRows)
        tile_dots<kRows>(xs, d, block, dots);
      else
        for (size_t r = 0; r < R; ++r) tile_dots<1>(xs + r, d, block, dots + r * kBlock);
      const float* cn = P.norms.data() + blk * kBlock;
      for (size_t r = 0; r < R; ++r) {
        const float* dr = dots + r * kBlock;
        for (size_t c = 0; c < kBlock; ++c) {
          const float v = cn[c] - 2.0f * dr[c];
          if (v < best[r]) {
            best[r] = v;
            arg[r] = static_cast<int32_t>(blk * kBlock + c);
          }
        }
      }
    }
    for (size_t r = 0; r < R; ++r) {
      idx[i + r] = arg[r];
      if (dist) dist[i + r] = std::sqrt(std::max(0.0f, sqnorm(X + (i + r) * d, d) + best[r]));
    }
  }
}

void dot_rows(const PackedCentroids& P, const float* X, size_t b, size_t e, float* out, size_t ld) {
  const size_t d = P.d;
  float dots[kRows * kBlock];
  for (size_t i = b; i < e; i += kRows) {
    const size_t R = std::min(kRows, e - i);
    const float* xs[kRows];
    for (size_t r = 0; r < kRows; ++r) xs[r] = X + (i + std::min(r, R - 1)) * d;
    for (size_t blk = 0; blk < P.blocks; ++blk) {
      const float* block = P.data.data() + blk * d * kBlock;
      if (R == kRows)
        tile_dots<kRows>(xs, d, block, dots);
      else
        for (size_t r = 0; r < R; ++r) tile_dots<1>(xs + r, d, block, dots + r * kBlock);
      const size_t c0 = blk * kBlock, cn = std::min(kBlock, P.k - c0);
      for (size_t r = 0; r < R; ++r) std::memcpy(out + (i - b + r) * ld + c0, dots + r * kBlock, cn * sizeof(float));
    }
  }
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
