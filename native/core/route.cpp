#include "route.h"

#include <algorithm>
#include <vector>

#include "assign.h"
#include "mlp.h"

namespace uniroute {

namespace {
Status check_parts(const Pool& pool, const Difficulty* diff, const EvidenceCells* cells) {
  if (pool.k == 0) return Status::Invalid("the router has no clusters");
  if (pool.psi_logit && (!diff || !diff->w || !diff->mu))
    return Status::Invalid("a pool with a difficulty slope needs the difficulty model");
  if (pool.evidence && pool.ke > 0 && (!cells || !cells->centroids || cells->ke != pool.ke))
    return Status::Invalid("a pool with evidence cells needs their centroids");
  if (cells && cells->centroids) {
    if (!cells->start) return Status::Invalid("evidence cells need their cluster offsets");
    if (cells->start[0] != 0 || static_cast<size_t>(cells->start[pool.k]) != cells->ke)
      return Status::Invalid("evidence cell offsets must run from 0 to the number of cells");
    for (size_t c = 0; c < pool.k; ++c)
      if (cells->start[c + 1] <= cells->start[c]) return Status::Invalid("every cluster needs at least one evidence cell");
  }
  return Status::Ok();
}

// Everything after the embedding, for prompt i: cluster, distance, difficulty, evidence cell, scores and argmin.
// z: the learned map's membership row (k) or null (hard assignment). g: scratch of m floats.
struct Decider {
  const Pool& pool;
  const Scorer& scorer;
  const RouteOutputs& out;
  const float* centroids;
  const float* cn;
  const Difficulty* diff;
  const EvidenceCells* cells;
  const float* en;
  size_t D;
  // pre_c >= 0: the nearest centroid (and pre_dist its distance) already found by the blocked kernel
  void operator()(size_t i, const float* emb, const float* z, float* g, int32_t pre_c = -1, float pre_dist = 0.0f) const {
    const size_t K = pool.k, m = pool.m;
    int32_t c = pre_c;
    float dist = pre_dist;
    if (c < 0) nearest_one(emb, D, centroids, cn, K, &c, &dist);
    out.cluster[i] = c;
    if (out.distance) out.distance[i] = dist;
    float r = 0.0f;
    if (pool.psi_logit) {
      float d = diff->w0;
      for (size_t t = 0; t < D; ++t) d += diff->w[t] * emb[t];
      float mu = 0.0f;
      if (z)
        for (size_t t = 0; t < K; ++t) mu += z[t] * diff->mu[t];
      else
        mu = diff->mu[c];
      r = d - mu;
    }
    int32_t cell = -1;
    if (en) {
      // the nearest of the prompt's cluster's cells
      const size_t b = static_cast<size_t>(cells->start[c]), e = static_cast<size_t>(cells->start[c + 1]);
      float unused;
      nearest_one(emb, D, cells->centroids + b * D, en + b, e - b, &cell, &unused);
      cell += static_cast<int32_t>(b);
      if (out.cell) out.cell[i] = cell;
    }
    float* row = out.gamma ? out.gamma + i * m : g;
    const int32_t ch = z ? scorer.soft(z, allowed_row(pool, i), row, r, cell >= 0 ? cell : (pool.ke ? -1 : c))
                         : scorer.hard(c, allowed_row(pool, i), row, r, cell);
    out.choice[i] = ch;
    if (out.chosen) out.chosen[i] = ch >= 0 ? row[ch] : 0.0f;
  }
};
}  // namespace

Status route_batch(const Projection& proj, const TextRef* texts, size_t n, const float* centroids, const Pool& pool,
                   const RouteOutputs& out, int threads, const Difficulty* diff, const EvidenceCells* cells,
                   const float* centroid_norms) {
  const size_t D = proj.cfg.dim, K = pool.k;
  Status st = check_parts(pool, diff, cells);
  if (!st.ok()) return st;
  const bool by_cell = cells && cells->centroids && cells->ke > 0;
  // the centroid norms, given once by the caller (the router keeps them) or computed here
  const std::vector<float> cn = centroid_norms ? std::vector<float>() : uniroute::centroid_norms(centroids, K, D);
  const std::vector<float> en = by_cell && !cells->norms ? uniroute::centroid_norms(cells->centroids, cells->ke, D) : std::vector<float>();
  const Scorer scorer(pool);
  const Decider decide{pool, scorer, out, centroids, centroid_norms ? centroid_norms : cn.data(), diff, cells,
                       by_cell ? (cells->norms ? cells->norms : en.data()) : nullptr, D};
  return parallel_for(n, threads, 32, [&](size_t b, size_t e, int) {
    FeatureExtractor& fx = FeatureExtractor::for_thread(proj.cfg);
    std::vector<Feature> feats;
    std::vector<float> emb(D), g(pool.m);
    for (size_t i = b; i < e; ++i) {
      embed_one(proj, fx, feats, texts[i].data, texts[i].len, emb.data());
      decide(i, emb.data(), nullptr, g.data());
    }
    return Status::Ok();
  });
}

Status route_vectors(const VectorRoute& a, const Pool& pool, const RouteOutputs& out, int threads) {
  Status st = check_parts(pool, a.diff, a.cells);
  if (!st.ok()) return st;
  const size_t D = a.dim, K = pool.k;
  if (a.map && (a.map->in != D || a.map->out != K || a.map->head != Head::Mixture))
    return Status::Invalid("the learned map does not map dim -> k with a mixture head");
  const bool by_cell = a.cells && a.cells->centroids && a.cells->ke > 0;
  const std::vector<float> cn = a.centroid_norms ? std::vector<float>() : centroid_norms(a.centroids, K, D);
  const std::vector<float> en = by_cell && !a.cells->norms ? centroid_norms(a.cells->centroids, a.cells->ke, D) : std::vector<float>();
  const Scorer scorer(pool);
  const Decider decide{pool, scorer, out, a.centroids, a.centroid_norms ? a.centroid_norms : cn.data(), a.diff, a.cells,
                       by_cell ? (a.cells->norms ? a.cells->norms : en.data()) : nullptr, D};
  const size_t chunk = std::max<size_t>(1, a.chunk);
  // the nearest centroids of a chunk through the blocked (GEMM-like) kernel, then the rest per row
  const PackedCentroids packed = pack_centroids(a.centroids, K, D, a.centroid_norms ? a.centroid_norms : cn.data());
  std::vector<int32_t> near(std::min(chunk, a.n));
  std::vector<float> near_dist(near.size());
  std::vector<float> Z;
  if (a.map) Z.resize(std::min(chunk, a.n) * K);
  for (size_t b0 = 0; b0 < a.n; b0 += chunk) {
    const size_t e0 = std::min(a.n, b0 + chunk);
    if (a.map) {
      st = mlp_forward(*a.map, a.map_params, a.X + b0 * D, e0 - b0, Z.data(), threads);
      if (!st.ok()) return st;
    }
    st = parallel_for(e0 - b0, threads, 256, [&](size_t b, size_t e, int) {
      std::vector<float> g(pool.m);
      assign_rows(packed, a.X + b0 * D, b, e, near.data(), near_dist.data());
      for (size_t t = b; t < e; ++t)
        decide(b0 + t, a.X + (b0 + t) * D, a.map ? Z.data() + t * K : nullptr, g.data(), near[t], near_dist[t]);
      return Status::Ok();
    });
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

}  // namespace uniroute
