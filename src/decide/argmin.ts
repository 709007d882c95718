/**
 * The one argmin. Every decision — the router's, λ calibration's, the evaluation's baselines' — is made by the
 * engine's argmin (native/core/score.cpp), with one tie rule: the lowest γ + λ·cost among the allowed LLMs; on a
 * tie, the lower cost; then the LLM listed first. There is no other rule beside it: how much is known about an LLM
 * in a cluster enters only through its posterior (its mean, and its sd under a risk setting).
 */
import { call, native } from '../engine/native.js';

export interface ArgminOptions {
  lambda: number;
  /** null (all), m flags (shared) or n x m flags (per prompt). */
  allowed?: Uint8Array | null;
}

/** Decisions for n prompts given their predicted errors (n x m): the index of the chosen LLM, or −1 when none is allowed. */
export function argminRows(predicted: Float32Array, costs: Float32Array, n: number, m: number, o: ArgminOptions): Int32Array {
  const choice = new Int32Array(n);
  if (n === 0) return choice;
  const allowed = o.allowed ?? null;
  call(() =>
    native().argminSync({
      predicted,
      cost: costs,
      m,
      lambda: o.lambda,
      allowed,
      allowedPerRow: !!allowed && allowed.length === n * m && n * m !== m,
      choice,
    }),
  );
  return choice;
}
