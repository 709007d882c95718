// Nearest-centroid assignment (squared Euclidean through ||x||^2 - 2 x.c + ||c||^2).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.h"

namespace uniroute {

// ||c_k||^2 for each of the k centroids (k x d).
std::vector<float> centroid_norms(const float* C, size_t k, size_t d);

// c_norm2[k] must hold ||c_k||^2. Ties go to the lowest index. dist receives the Euclidean distance.
void nearest_one(const float* x, size_t d, const float* C, const float* c_norm2, size_t k, int32_t* idx, float* dist);

Status assign_nearest(const float* X, size_t n, size_t d, const float* C, size_t k, int32_t* idx, float* dist,
                      int threads);

}  // namespace uniroute
