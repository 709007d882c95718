/** The shapes of a routing request (a policy) and of its decisions. */

export interface RouteOptions {
  /** Error-per-cost trade-off; 0 picks the lowest predicted error. Default: the pool's operating point. */
  lambda?: number;
  /**
   * The unit-free knob instead of λ: t in [0, 1], 0 = the lowest predicted error, 1 = the cheapest allowed LLM for
   * every prompt; λ = λ₁ · 10^(−4 (1 − t)) for 0 < t < 1, where λ₁ is this pool's λ at which the cheapest LLM wins
   * in every cluster (`Router.tradeoffScale()`). Mean cost never rises as t rises.
   */
  tradeoff?: number;
  /**
   * A calibrated mix (Calibration.mix from calibrateLambda): the prompts `mixedRow` picks are routed at mix.lambda,
   * the rest at λ, so that a cost or accuracy target can land between two neighbouring λ. `offset`: the index of
   * this batch's first prompt in the whole stream (so the assignment continues across batches).
   */
  mix?: { lambda: number; share: number; offset?: number };
  /** The allowed LLMs: one list for every prompt, or one list per prompt. Default: the whole pool. */
  models?: string[] | string[][];
  /**
   * Risk aversion κ >= 0: route on Ψ + κ·sd (the posterior's upper side) so that thinly evidenced LLMs are not
   * trusted beyond what their outcomes show. Default 0 (the posterior mean).
   */
  risk?: number;
  /**
   * Removed: decisions rest on the posterior alone (an LLM with no outcome in a cluster has the prior's wide
   * posterior there). 'ignore' is accepted as a no-op for old callers; 'prefer' is refused.
   */
  evidence?: 'prefer' | 'ignore';
  /**
   * Keep every candidate's predicted error (the n x m `predictedError` matrix, for explanations and calibration).
   * Default true; false keeps only the chosen LLM's (`chosenError`), so memory stays O(n) on huge batches.
   */
  explain?: boolean;
  /**
   * A quality floor ε in [0, 1]: route to the cheapest allowed LLM whose predicted error is <= ε (ties as the
   * engine breaks them), or to the lowest predicted error where none is. λ then plays no part.
   */
  maxError?: number;
  /**
   * Out-of-distribution prompts: a prompt farther from its nearest centroid than `quantile` (default 0.99) of the
   * training prompts were is flagged (`ood`) and decided by `fallback`: 'prior' (default: on the pool's prior over
   * clusters, every LLM's Ψ averaged by the clusters' share, at the caller's λ, risk and floor), 'best-overall'
   * (the allowed LLM with the lowest such error, whatever the cost), an LLM's name, or 'route' (flag only: decided
   * on its nearest cluster). false turns it off. A router fitted before distances were kept flags nothing.
   */
  ood?: { quantile?: number; fallback?: string } | false;
  /**
   * Exploration (with feedback on): this share of the prompts (in [0, 1]) is decided by Thompson sampling, on one
   * draw of every candidate's error from its posterior instead of its mean, so that an LLM described by few
   * outcomes gets traffic where it might win, and so earns the outcomes that settle it. Default 0.
   */
  explore?: number;
  /** The seed of exploration's draws (default: a random one per batch). */
  exploreSeed?: number;
}

export interface RouteBatch {
  /** Pool snapshot the decisions refer to. */
  models: string[];
  costs: Float32Array;
  lambda: number;
  /** Per prompt: index into `models` of the chosen LLM. */
  choice: Int32Array;
  cluster: Int32Array;
  distance: Float32Array;
  /** n x m predicted errors, row-major (empty when routed with explain: false). */
  predictedError: Float32Array;
  /** The chosen LLM's predicted error, per prompt. */
  chosenError: Float32Array;
  /** The snapshot's Ψ (posterior mean), its posterior sd and outcome counts (m x k), for explanations. */
  psi: Float32Array;
  sd: Float32Array;
  counts: Float32Array;
  k: number;
  minEvidence: number;
  /** The snapshot's evidence flags (m x evidenceStride; null when minEvidence is 0) and each prompt's column in them. */
  evidenceFlags: Uint8Array | null;
  evidenceStride: number;
  cellOf: Int32Array;
  /** Per prompt: 1 when it lies beyond the out-of-distribution threshold (empty when OOD is off). */
  ood: Uint8Array;
  /** True when those prompts went to a fixed LLM (whatever λ), false when they were decided on a prior or flagged. */
  oodFixed?: boolean;
  /** How flagged prompts were decided ('prior', 'best-overall', 'route' or an LLM's name) and the threshold distance. */
  oodFallback?: string;
  oodThreshold?: number;
  /** The risk κ the batch was routed at, and the Ψ the engine scored (Ψ, or Ψ + κ·sd under a risk). */
  risk: number;
  scored: Float32Array;
  /** Per prompt: 1 when it was decided by exploration (empty when exploration is off). */
  explored: Uint8Array;
}

export interface Candidate {
  model: string;
  predictedError: number;
  cost: number;
  /** The LLM's outcomes in the prompt's cluster, and whether it has evidence where the prompt lies (its cell). */
  outcomes: number;
  evidence: boolean;
  /** The 95 % interval of its error in the cluster (the posterior's), moved by the prompt's difficulty as the prediction is. */
  interval: [number, number];
}

export interface RouteDecision {
  model: string;
  cluster: number;
  distance: number;
  predictedError: number;
  cost: number;
  /** Beyond the out-of-distribution threshold. */
  ood: boolean;
  /** Decided by an exploration draw rather than the posterior mean. */
  explored?: boolean;
  /** Why the decision is what it is, when it was not the plain rule on the prompt's cluster (explained decisions). */
  reason?: string;
  candidates: Candidate[];
}
