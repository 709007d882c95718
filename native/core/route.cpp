#include "route.h"

#include <vector>

#include "assign.h"

namespace uniroute {

Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads, const Difficulty* diff, const EvidenceCells* cells) {
  const size_t D = proj.cfg.dim, K = pool.k;
  if (K == 0) return Status::Invalid("the router has no clusters");
  if (pool.psi_logit && (!diff || !diff->w || !diff->mu))
    return Status::Invalid("a pool with a difficulty slope needs the difficulty model");
  if (pool.evidence && pool.ke > 0 && (!cells || !cells->centroids || cells->ke != pool.ke))
    return Status::Invalid("a pool with evidence cells needs their centroids");
  const bool by_cell = cells && cells->centroids && cells->ke > 0;
  const std::vector<float> cn = centroid_norms(centroids, K, D);
  const std::vector<float> en = by_cell ? centroid_norms(cells->centroids, cells->ke, D) : std::vector<float>();
  return parallel_for(n, threads, 32, [&](size_t b, size_t e, int) {
    FeatureExtractor fx(proj.cfg);
    std::vector<Feature> feats;
    std::vector<float> emb(D);
    for (size_t i = b; i < e; ++i) {
      embed_one(proj, fx, feats, texts[i].data, texts[i].len, emb.data());
      int32_t c;
      float dist;
      nearest_one(emb.data(), D, centroids, cn.data(), K, &c, &dist);
      out.cluster[i] = c;
      if (out.distance) out.distance[i] = dist;
      float r = 0.0f;
      if (pool.psi_logit) {
        float d = diff->w0;
        for (size_t t = 0; t < D; ++t) d += diff->w[t] * emb[t];
        r = d - diff->mu[c];
      }
      int32_t cell = -1;
      if (by_cell) {
        float unused;
        nearest_one(emb.data(), D, cells->centroids, en.data(), cells->ke, &cell, &unused);
        if (out.cell) out.cell[i] = cell;
      }
      out.choice[i] = score_hard(pool, c, allowed_row(pool, i), out.gamma ? out.gamma + i * pool.m : nullptr, r, cell);
    }
    return Status::Ok();
  });
}

}  // namespace uniroute
