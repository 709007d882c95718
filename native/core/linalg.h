// Small dense linear algebra used by fitting (not on the routing hot path).
#pragma once
#include <cstddef>
#include <vector>

#include "common.h"

namespace uniroute {

// Symmetric eigen-decomposition of the n x n row-major matrix a (double).
// On return: values sorted in decreasing order, vectors n x n row-major with eigenvector j in column j.
// A matrix with a NaN or an infinity is refused (InvalidArgument), never read out of bounds.
Status sym_eigen(size_t n, const std::vector<double>& a, std::vector<double>& values, std::vector<double>& vectors);

}  // namespace uniroute
