/**
 * How one line wants to be decided: the chat route's rules for `body.model` ("uniroute", "uniroute:lambda=X",
 * "uniroute/<preset>", or an LLM with an upstream) and its `uniroute` object, applied to a batch line. A line that
 * cannot be sent gets the error the chat route would answer (status, code, message), as its error line.
 */
import { didYouMean, UnirouteError } from '../errors.js';
import type { Router } from '../router/router.js';
import type { Policy } from '../server/batcher.js';
import { estimateTokens, parseRouting, userText, type Gateway } from '../server/chat.js';
import { lambdaForTarget } from '../decide/operating.js';
import type { LlmUpstream } from '../server/gateway.js';

export type LinePlan =
  | {
      ok: true;
      routed: boolean;
      policy: Policy;
      allowed?: Set<string>;
      maxCost?: number;
      /** The LLM named by the line (not routed). */
      direct?: string;
      /** The user text routed on. */
      text: string;
      /** The body sent (without `uniroute`, `stream`). */
      forward: Record<string, any>;
      /** Estimated tokens (context windows), 0 when no upstream declares one. */
      need: number;
    }
  | { ok: false; status: number; code: string; message: string };

export interface PlanContext {
  router: Router;
  gateway: Gateway;
  ood?: Policy['ood'];
  maxPromptChars: number;
}

export function planLine(body: Record<string, any>, api: 'chat' | 'messages', c: PlanContext): LinePlan {
  const { router, gateway: g } = c;
  const modelName = String(body.model);
  const fail = (status: number, code: string, message: string): LinePlan => ({ ok: false, status, code, message });
  let routed = false;
  let policy: Policy = { lambda: router.defaultLambda, explain: false, ood: c.ood };
  let allowed: Set<string> | undefined;
  let maxCost: number | undefined;
  const lam = /^uniroute(?::lambda=([0-9.eE+-]+))?$/.exec(modelName);
  const pre = /^uniroute\/(.+)$/.exec(modelName);
  if (lam) {
    routed = true;
    const lambda = lam[1] !== undefined ? Number(lam[1]) : router.defaultLambda;
    if (!Number.isFinite(lambda) || lambda < 0) return fail(400, 'invalid_lambda', `invalid lambda in model "${modelName}"`);
    policy = { ...policy, lambda };
  } else if (pre) {
    const p = g.presets.get(pre[1]);
    if (!p) return fail(404, 'model_not_found', `no preset "${pre[1]}"${didYouMean(pre[1], g.presets.keys())}; presets: ${[...g.presets.keys()].map((k) => `uniroute/${k}`).join(', ')}`);
    routed = true;
    const target = p.target ? lambdaForTarget(router.operatingPoint(), p.target) : null;
    policy = { ...policy, lambda: target?.lambda ?? p.policy.lambda ?? router.defaultLambda, ...(p.policy.maxError !== undefined ? { maxError: p.policy.maxError } : {}) };
    if (p.models) allowed = new Set(p.models);
  } else if (!g.upstreams.has(modelName)) {
    if (router.has(modelName)) return fail(500, 'no_upstream', `"${modelName}" has no upstream in the gateway config`);
    return fail(404, 'model_not_found', `model "${modelName}" is neither "uniroute", "uniroute/<preset>" nor an LLM with an upstream${didYouMean(modelName, g.upstreams.keys())}`);
  }
  const forward: Record<string, any> = { ...body };
  delete forward.stream; // a batch line's answer is kept whole
  delete forward.stream_options;
  if (body.uniroute !== undefined) {
    if (!routed) return fail(400, 'invalid_routing', `the uniroute object steers routed requests (model "uniroute" or "uniroute/<preset>"); this line names the LLM "${modelName}"`);
    let r;
    try {
      r = parseRouting(body.uniroute, router.snapshot().index);
    } catch (e) {
      const err = e as UnirouteError;
      return fail(err.httpStatus ?? 400, 'invalid_routing', err.message);
    }
    delete forward.uniroute;
    if (r.models) allowed = allowed ? new Set(r.models.filter((m) => allowed!.has(m))) : new Set(r.models);
    if (allowed && allowed.size === 0) return fail(400, 'invalid_routing', "uniroute.models and the preset's models have no LLM in common");
    maxCost = r.maxCost;
    const target = r.lambda !== undefined || r.tradeoff !== undefined || r.maxError !== undefined;
    if (r.lambda !== undefined) policy = { ...policy, lambda: r.lambda, maxError: undefined };
    if (r.tradeoff !== undefined) policy = { ...policy, lambda: router.lambdaForTradeoff(r.tradeoff), maxError: undefined };
    if (r.maxError !== undefined) policy = { ...policy, maxError: r.maxError };
    if (maxCost !== undefined && !target) policy = { ...policy, lambda: 0, maxError: undefined };
    if (r.risk !== undefined) policy = { ...policy, risk: r.risk };
    if (policy.maxError === undefined) delete policy.maxError;
  }
  let text = '';
  if (routed) {
    text = userText(body.messages);
    if (!text) return fail(400, 'empty_prompt', 'the conversation has no user text to route on');
    if (text.length > c.maxPromptChars) return fail(400, 'prompt_too_long', `the user text has ${text.length} characters; the limit is ${c.maxPromptChars}`);
  }
  const need = g.windows ? estimateTokens(body, api) : 0;
  if (!routed) {
    const up = g.upstreams.get(modelName)!;
    if (need && up.cfg.contextWindow !== undefined && up.cfg.contextWindow < need) return fail(400, 'context_length_exceeded', `the request has about ${need} tokens; "${modelName}"'s context window is ${up.cfg.contextWindow}`);
    return { ok: true, routed, policy, text, forward, need, direct: modelName };
  }
  return { ok: true, routed, policy, ...(allowed ? { allowed } : {}), ...(maxCost !== undefined ? { maxCost } : {}), text, forward, need };
}

/** A policy's key: lines with the same one are decided in one engine call. */
export const policyKey = (p: Policy) => `${p.lambda}|${p.risk ?? 0}|${p.maxError ?? ''}|${p.ood === false ? 'off' : `${p.ood?.quantile ?? ''}/${p.ood?.fallback ?? ''}`}`;

/** The LLMs a routed line may go to now: in the pool, with an upstream that takes requests, allowed, cheap and large enough. */
export function candidatesOf(plan: Extract<LinePlan, { ok: true }>, c: PlanContext, tried?: ReadonlySet<string>): string[] {
  const snap = c.router.snapshot();
  const now = Date.now();
  const out: string[] = [];
  for (const n of snap.names) {
    const u: LlmUpstream | undefined = c.gateway.upstreams.get(n);
    if (!u || tried?.has(n) || !u.allows(now) || (plan.allowed && !plan.allowed.has(n))) continue;
    if (plan.need && u.cfg.contextWindow !== undefined && u.cfg.contextWindow < plan.need) continue;
    if (plan.maxCost !== undefined) {
      const j = snap.index.get(n)!;
      if (!(snap.cost[j] <= plan.maxCost)) continue;
    }
    out.push(n);
  }
  return out;
}

/** Why a routed line has no candidate: permanent (no upstream, too long, too dear) or for now (breakers open). */
export function nobody(plan: Extract<LinePlan, { ok: true }>, c: PlanContext): { status: number; code: string; message: string; retryable: boolean } {
  const snap = c.router.snapshot();
  const withUp = snap.names.filter((n) => (!plan.allowed || plan.allowed.has(n)) && c.gateway.upstreams.has(n));
  if (withUp.length === 0) return { status: 500, code: 'no_upstream', message: plan.allowed ? `none of the allowed LLMs (${[...plan.allowed].slice(0, 5).join(', ')}) has an upstream` : 'no LLM in the pool has an upstream in the gateway config', retryable: false };
  if (plan.need && withUp.every((n) => (c.gateway.upstreams.get(n)!.cfg.contextWindow ?? Infinity) < plan.need))
    return { status: 400, code: 'context_length_exceeded', message: `the request has about ${plan.need} tokens; no ${plan.allowed ? 'allowed ' : ''}LLM's context window takes it`, retryable: false };
  if (plan.maxCost !== undefined && withUp.every((n) => !(snap.cost[snap.index.get(n)!] <= plan.maxCost!)))
    return { status: 400, code: 'invalid_routing', message: `uniroute.max_cost: no ${plan.allowed ? 'allowed ' : ''}LLM with an upstream costs at most ${plan.maxCost} per query`, retryable: false };
  return { status: 503, code: 'upstreams_unavailable', message: 'every upstream that could answer is cooling down after repeated failures (circuit breakers open)', retryable: true };
}

/** The most accurate LLM with an upstream: the lowest predicted error over the pool's prior over clusters. */
export function referenceLlm(c: PlanContext): string | undefined {
  const snap = c.router.snapshot();
  let best: string | undefined;
  let err = Infinity;
  snap.names.forEach((n, j) => {
    if (c.gateway.upstreams.has(n) && snap.overall[j] < err) {
      err = snap.overall[j];
      best = n;
    }
  });
  return best;
}
