// K-means: k-means++ seeding, Lloyd iterations to convergence, empty clusters re-seeded; fully determined by a seed.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.h"

namespace uniroute {

struct KMeansOptions {
  uint64_t seed = 1;
  uint32_t max_iter = 300;
  double tol = 1e-7;  // stop when the relative drop of the objective is below tol (or no assignment changes)
  uint32_t n_init = 1;  // restarts; the run with the lowest objective wins
  int threads = 0;
  // skip the distances that provably cannot change the result: in the seeding, the points no trial can come
  // closer to; in Lloyd's steps, the points no other centroid can be nearer to (the same result, bit for bit; off
  // only to test that)
  bool prune = true;
};

struct KMeansResult {
  double inertia = 0.0;  // sum of squared distances to the assigned centroid
  uint32_t iterations = 0;
  uint32_t reseeded = 0;  // empty clusters re-seeded
  uint64_t seeding_skipped = 0;  // (point, centre) distance rows the seeding's bound skipped, over every restart
  uint64_t lloyd_skipped = 0;    // points Lloyd's steps kept without the kernel (of the best restart)
};

// centroids: k x d out; assign: n out. Requires 1 <= k <= n.
Status kmeans(const float* X, size_t n, size_t d, size_t k, const KMeansOptions& opt, float* centroids,
              int32_t* assign, KMeansResult& result);

}  // namespace uniroute
