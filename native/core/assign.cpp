#include "assign.h"

#include <cmath>
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

Status assign_nearest(const float* X, size_t n, size_t d, const float* C, size_t k, int32_t* idx, float* dist,
                      int threads) {
  if (k == 0) return Status::Invalid("there must be at least one centroid");
  const std::vector<float> cn = centroid_norms(C, k, d);
  return parallel_for(n, threads, 256, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) nearest_one(X + i * d, d, C, cn.data(), k, idx + i, dist ? dist + i : nullptr);
    return Status::Ok();
  });
}

}  // namespace uniroute
