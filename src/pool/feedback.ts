/**
 * Production feedback. Every routing decision gets a `decision_id`: the fitted model's hash, the prompt's cluster
 * and evidence cell, the chosen LLM, a time and a nonce, signed with HMAC-SHA256 under the server's feedback
 * secret, so a client cannot forge one (or move an outcome to another cluster). An outcome reported for it (for
 * the chosen LLM, or for another LLM that also answered) is added to that LLM's error sum and count in that
 * cluster (and its cell count), once per decision and LLM. With a half-life, an LLM's older evidence is decayed
 * first, so Ψ follows drift.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { UnirouteError } from '../errors.js';
import type { PoolEntry } from '../router/router.js';

export interface Decision {
  /** First 16 hex digits of the fitted model's hash. */
  h: string;
  /** Cluster and evidence cell (−1 without cells). */
  k: number;
  c: number;
  /** The chosen LLM. */
  m: string;
  /** Unix ms when decided. */
  t: number;
  n: string;
}

const b64 = (b: Buffer) => b.toString('base64url');

export class DecisionSigner {
  private readonly key: Buffer;
  constructor(secret: string | Buffer) {
    this.key = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
    if (this.key.length < 16) throw new UnirouteError('INVALID_ARGUMENT', 'the feedback secret must have at least 16 bytes');
  }

  /** A fresh random secret (decision ids then hold only for this process). */
  static random(): DecisionSigner {
    return new DecisionSigner(randomBytes(32));
  }

  sign(d: Omit<Decision, 't' | 'n'>, now = Date.now()): string {
    const body = b64(Buffer.from(JSON.stringify({ ...d, t: now, n: b64(randomBytes(6)) }), 'utf8'));
    return `${body}.${b64(createHmac('sha256', this.key).update(body).digest())}`;
  }

  /** The decision inside a signed id; a forged, edited or malformed id is INVALID_ARGUMENT. */
  verify(id: unknown): Decision {
    const bad = (why: string): never => {
      throw new UnirouteError('INVALID_ARGUMENT', `\`decision_id\` ${why}`);
    };
    if (typeof id !== 'string' || id.length > 1024) bad('must be a string from a routing answer');
    const [body, mac, extra] = (id as string).split('.');
    if (!body || !mac || extra !== undefined) bad('is malformed');
    const want = createHmac('sha256', this.key).update(body).digest();
    const got = Buffer.from(mac, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) bad('has a bad signature (not issued by this pool\'s servers, or edited)');
    let d: Decision;
    try {
      d = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      return bad('is malformed');
    }
    if (typeof d?.h !== 'string' || !Number.isInteger(d.k) || !Number.isInteger(d.c) || typeof d.m !== 'string' || !Number.isFinite(d.t)) bad('is malformed');
    return d;
  }
}

/** A production outcome as a client reports it (POST /v1/feedback, or a line of `uniroute feedback`). */
export interface FeedbackReport {
  decision_id: unknown;
  correct?: unknown;
  score?: unknown;
  model?: unknown;
}

/** What a report adds to the pool: an LLM's error in a cluster and cell, once per `id`. */
export interface ReportedOutcome {
  model: string;
  cluster: number;
  cell: number;
  error: number;
  /** One per decision and LLM (the decision id's signature and the LLM). */
  id: string;
  decidedAt: number;
}

/** How long a decision takes feedback (7 days). */
export const FEEDBACK_MAX_AGE_MS = 7 * 86_400_000;

/**
 * The outcome a report describes, on every path alike: its decision id verified, made with this fitted model
 * (`modelTag`), not older than `maxAgeMs`, and exactly one of "correct" (0 or 1) or "score" (in [0, 1]).
 */
export function reportedOutcome(r: FeedbackReport, signer: DecisionSigner, modelTag: string, maxAgeMs = FEEDBACK_MAX_AGE_MS, now = Date.now()): ReportedOutcome {
  const d = signer.verify(r.decision_id);
  if (d.h !== modelTag) throw new UnirouteError('ARTIFACT_MISMATCH', 'this decision was made with another fitted model: its cluster means nothing here');
  if (now - d.t > maxAgeMs) throw new UnirouteError('INVALID_ARGUMENT', `this decision is older than ${Math.round(maxAgeMs / 3_600_000)} h: feedback on it is no longer taken`);
  const given = r.correct !== undefined ? r.correct : r.score;
  if ((r.correct !== undefined) === (r.score !== undefined) || typeof given !== 'number' || !(given >= 0 && given <= 1) || (r.correct !== undefined && given !== 0 && given !== 1))
    throw new UnirouteError('INVALID_ARGUMENT', 'a report needs "correct": 0|1 or "score" in [0, 1]');
  if (r.model !== undefined && (typeof r.model !== 'string' || r.model.length === 0)) throw new UnirouteError('INVALID_ARGUMENT', '"model" must be an LLM\'s name');
  const model = (r.model as string | undefined) ?? d.m;
  return { model, cluster: d.k, cell: d.c, error: 1 - given, id: `${(r.decision_id as string).split('.')[1]}|${model}`, decidedAt: d.t };
}

/**
 * The entry after one more outcome (error in [0, 1]) in cluster k / cell c, with older evidence first decayed by
 * 2^(−Δt / halfLifeMs) since `lastAt` when a half-life is set.
 */
export function withOutcome(e: PoolEntry, k: number, c: number, error: number, decay = 1): PoolEntry {
  if (!(error >= 0 && error <= 1)) throw new UnirouteError('INVALID_ARGUMENT', 'an outcome must be in [0, 1]');
  if (!(k >= 0 && k < e.counts.length)) throw new UnirouteError('INVALID_ARGUMENT', `cluster ${k} is out of range`);
  const errorSums = Float32Array.from(e.errorSums, (v) => v * decay);
  const counts = Float32Array.from(e.counts, (v) => v * decay);
  errorSums[k] += error;
  counts[k] += 1;
  let cellCounts = e.cellCounts ? Float32Array.from(e.cellCounts, (v) => v * decay) : undefined;
  if (cellCounts && c >= 0 && c < cellCounts.length) cellCounts[c] += 1;
  return { name: e.name, costPerQuery: e.costPerQuery, errorSums, counts, ...(cellCounts ? { cellCounts } : {}) };
}

/** The decay factor for evidence last updated at `lastAt` (1 without a half-life). */
export function decayFactor(lastAt: number | undefined, now: number, halfLifeMs?: number): number {
  if (!halfLifeMs || lastAt === undefined || !(now > lastAt)) return 1;
  return Math.pow(2, -(now - lastAt) / halfLifeMs);
}
