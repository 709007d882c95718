/** POST /v1/route: decisions for prompts (or embeddings), in the CLI's decision shape (a fastify plugin). */
import type { FastifyInstance } from 'fastify';
import { routeResponseSchema } from './schemas.js';
import { UnirouteError, didYouMean } from '../errors.js';
import { embeddingsFromRows } from '../embed/embedder.js';
import { explainRow } from '../router/router.js';
import { costJson } from '../decide/explain.js';
import type { BatchSlice } from './batcher.js';
import type { ServerContext } from './context.js';

/** The fields of a /v1/route body. */
const ROUTE_FIELDS = ['prompt', 'prompts', 'embedding', 'embeddings', 'lambda', 'tradeoff', 'max_cost', 'min_accuracy', 'max_error', 'models', 'risk', 'evidence', 'explain', 'ood'];
const INPUTS = ['prompt', 'prompts', 'embedding', 'embeddings'];

/** What a field takes, in words (for errors). */
const TAKES: Record<string, string> = {
  prompt: 'a string',
  prompts: 'a non-empty list of strings',
  embedding: 'a list of numbers',
  embeddings: 'a non-empty list of lists of numbers',
  lambda: 'a number >= 0',
  tradeoff: 'a number in [0, 1] (0 = lowest predicted error, 1 = cheapest)',
  max_cost: 'a number >= 0 (the most accurate routing with mean cost per query at most this)',
  min_accuracy: 'a number in [0, 1] (the cheapest routing with mean predicted accuracy at least this)',
  max_error: 'a number in [0, 1] (the cheapest LLM whose predicted error is at most this)',
  models: 'a non-empty list of LLM names',
  risk: 'a number in [0, 100]',
  evidence: '"prefer" or "ignore"',
  explain: 'true or false (false leaves out the candidates block)',
  ood: 'false, or {"quantile": 0.5-1, "fallback": "prior" | "best-overall" | "route" | an LLM}',
};

/**
 * A /v1/route body's validation error in plain words: the field it is about, what it takes and what came (the
 * validator's own wording, "must match exactly one schema in oneOf", says neither).
 */
export function plainRouteError(body: unknown, v: { instancePath?: string; keyword?: string; params?: Record<string, any>; message?: string } | undefined): string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return `the body must be a JSON object such as {"prompt": "..."}, got ${Array.isArray(body) ? 'a list' : JSON.stringify(body)?.slice(0, 40)}`;
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !ROUTE_FIELDS.includes(k));
  if (unknown.length) return `unknown field "${unknown[0]}"${didYouMean(unknown[0], ROUTE_FIELDS)}; the fields are ${ROUTE_FIELDS.join(', ')}`;
  const inputs = INPUTS.filter((k) => b[k] !== undefined);
  if (inputs.length !== 1) return inputs.length === 0 ? 'give the prompt to route: "prompt" (one), "prompts" (several), or "embedding" / "embeddings" for a router on your own vectors' : `give one of ${inputs.map((k) => `"${k}"`).join(' and ')}, not both`;
  const path = (v?.instancePath ?? '').split('/').filter(Boolean);
  const field = path[0];
  if (field && TAKES[field]) {
    let at = field;
    let got: unknown = b[field];
    for (const p of path.slice(1)) {
      at += /^\d+$/.test(p) ? `[${p}]` : `.${p}`;
      got = (got as any)?.[p];
    }
    if (v?.keyword === 'maxItems') return `"${at}" has ${(got as unknown[]).length} items; the limit is ${v.params?.limit}`;
    const shown = JSON.stringify(got);
    return `"${at}" ${path.length > 1 && v?.message ? v.message : `takes ${TAKES[field]}`}, got ${shown === undefined ? 'nothing' : shown.length > 60 ? `${shown.slice(0, 60)}...` : shown}`;
  }
  return `the body ${v?.message ?? 'is not valid'}`;
}

export function routeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const { router, metrics, batcher, signer, decisionId, oodDefault, maxPrompts, checkPrompt, poolVersionJson } = ctx;
  const checkLambda = (l: number | undefined) => {
    const lambda = l ?? router.defaultLambda;
    if (!Number.isFinite(lambda) || lambda < 0) throw new UnirouteError('INVALID_ARGUMENT', '`lambda` must be a finite number >= 0');
    return lambda;
  };
  const checkModels = (models: string[] | undefined) => {
    if (!models) return undefined;
    const known = router.snapshot().index;
    for (const m of models)
      if (!known.has(m)) throw new UnirouteError('UNKNOWN_MODEL', `\`models\` names "${m}", which is not in the pool${didYouMean(m, known.keys())}`);
    return models;
  };

  /** The chosen LLM of prompt i of a slice, counted in the decisions metric. */
  const chosen = (s: BatchSlice, i: number) => {
    const b = s.batch;
    const row = s.offset + i;
    const c = b.choice[row];
    metrics.decisionsOf(b.models[c]).inc();
    return { c, row, model: b.models[c], cluster: b.cluster[row], predictedError: b.chosenError[row] };
  };

  // Responses are written as JSON text. The candidates block of a nearest-centroid router without a difficulty
  // model depends only on the cluster (gamma = Psi[:, k]) and Ψ, so it is built once per cluster and Ψ and reused.
  const candidateCache = new WeakMap<Float32Array, Map<string, string>>();
  const quoted = new WeakMap<string[], string[]>();
  const names = (b: BatchSlice['batch']) => {
    let q = quoted.get(b.models);
    if (!q) quoted.set(b.models, (q = b.models.map((m) => JSON.stringify(m))));
    return q;
  };
  // the candidate fields are those of candidateRecord (src/router/decision.ts), written as text
  const candidatesJson = (b: BatchSlice['batch'], row: number, allowed?: Set<string>) => {
    const m = b.models.length;
    const q = names(b);
    const d = explainRow(b, row);
    let out = '{';
    let first = true;
    for (let j = 0; j < m; j++) {
      if (allowed && !allowed.has(b.models[j])) continue;
      const c = d.candidates[j];
      out += `${first ? '' : ','}${q[j]}:{"predicted_error":${c.predictedError},"cost":${costJson(c.cost)},"outcomes":${c.outcomes},"evidence":${c.evidence},"interval":[${c.interval[0]},${c.interval[1]}]}`;
      first = false;
    }
    return out + '}';
  };
  const decisionJson = (s: BatchSlice, i: number, allowed?: Set<string>, allowedKey?: string, explainAll = true) => {
    const b = s.batch;
    const { c, row, cluster: k, predictedError } = chosen(s, i);
    let cands: string;
    if (!explainAll) cands = '';
    // with a learned map or a difficulty model the predicted errors differ per prompt: no per-cluster cache
    else if (router.map || router.prior?.difficulty || b.ood[row] === 1) cands = candidatesJson(b, row, allowed);
    else {
      // keyed by the batch's Ψ: one per pool snapshot and risk setting
      let cache = candidateCache.get(b.psi);
      if (!cache) candidateCache.set(b.psi, (cache = new Map()));
      const key = `${k}|${allowedKey ?? ''}`;
      const hit = cache.get(key);
      if (hit !== undefined) cands = hit;
      else {
        if (cache.size >= 4096) cache.clear(); // bounded: one entry per cluster and allowed set
        cache.set(key, (cands = candidatesJson(b, row, allowed)));
      }
    }
    const ood = b.ood[row] === 1;
    if (ood) metrics.ood.inc({ route: '/v1/route' });
    const id = signer ? `"decision_id":"${decisionId(b.models[c], k, router.cells ? b.cellOf[row] : -1)}",` : '';
    const why = cands && (ood || (b.explored.length > 0 && b.explored[row] === 1)) ? explainRow(b, row).reason : undefined;
    const explored = b.explored.length > 0 && b.explored[row] === 1 ? ',"explored":true' : '';
    return `{${id}"model":${names(b)[c]},"cluster":${k},"distance":${b.distance[row]},"predicted_error":${predictedError},"cost":${costJson(b.costs[c])},"ood":${ood}${explored}${why ? `,"reason":${JSON.stringify(why)}` : ''}${cands ? `,"candidates":${cands}` : ''}}`;
  };

  // ---- routing --------------------------------------------------------------------------------------------------
  app.post<{
    Body: { prompt?: string; prompts?: string[]; embedding?: number[]; embeddings?: number[][]; lambda?: number; tradeoff?: number; max_cost?: number; min_accuracy?: number; models?: string[]; risk?: number; evidence?: 'prefer' | 'ignore'; max_error?: number; explain?: boolean; ood?: false | { quantile?: number; fallback?: string } };
  }>(
    '/v1/route',
    {
      onRequest: ctx.clientAuth,
      // validation errors are put in plain words by plainRouteError (below)
      attachValidation: true,
      schema: {
        body: {
          type: 'object',
          properties: {
            prompt: { type: 'string' },
            prompts: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: maxPrompts },
            // a router on your own embeddings takes vectors instead of texts
            embedding: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 65536 },
            embeddings: { type: 'array', items: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 65536 }, minItems: 1, maxItems: maxPrompts },
            lambda: { type: 'number', minimum: 0 },
            // the unit-free knob instead of lambda: 0 = lowest predicted error, 1 = the cheapest LLM
            tradeoff: { type: 'number', minimum: 0, maximum: 1 },
            models: { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 10_000 },
            risk: { type: 'number', minimum: 0, maximum: 100 },
            evidence: { type: 'string', enum: ['prefer', 'ignore'] },
            // a quality floor: the cheapest LLM whose predicted error is <= max_error (λ is then unused)
            max_error: { type: 'number', minimum: 0, maximum: 1 },
            // targets over the request's prompts, as the CLI's --max-cost / --min-accuracy: λ calibrated on them
            max_cost: { type: 'number', minimum: 0 },
            min_accuracy: { type: 'number', minimum: 0, maximum: 1 },
            // false: decisions without the candidates block
            explain: { type: 'boolean' },
            // out-of-distribution handling for this request (default: the server's config)
            ood: {
              oneOf: [
                { const: false },
                { type: 'object', additionalProperties: false, properties: { quantile: { type: 'number', minimum: 0.5, maximum: 1 }, fallback: { type: 'string', minLength: 1, maxLength: 256 } } },
              ],
            },
          },
        },
        // the body is written by hand (decisionJson) for speed, so this documents it; a test validates responses
        response: { 200: routeResponseSchema },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (req.validationError || b === null || typeof b !== 'object' || Array.isArray(b) || Object.keys(b).some((k) => !ROUTE_FIELDS.includes(k)) || INPUTS.filter((k) => (b as any)[k] !== undefined).length !== 1)
        throw new UnirouteError('INVALID_ARGUMENT', plainRouteError(b, (req.validationError as any)?.validation?.[0]));
      const targets = ['lambda', 'tradeoff', 'max_cost', 'min_accuracy', 'max_error'].filter((k) => (b as any)[k] !== undefined);
      if (targets.length > 1) throw new UnirouteError('INVALID_ARGUMENT', `give one of lambda, tradeoff, max_cost, min_accuracy and max_error, not both ${targets.slice(0, 2).join(' and ')}`);
      const models = checkModels(b.models);
      if (router.size === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty');
      let lambda = b.tradeoff !== undefined ? router.lambdaForTradeoff(b.tradeoff) : checkLambda(b.lambda);
      const explainAll = b.explain !== false;
      const ood = b.ood ?? oodDefault;
      const policy = { lambda, risk: b.risk, evidence: b.evidence, ood, ...(b.max_error !== undefined ? { maxError: b.max_error } : {}), ...(explainAll ? {} : { explain: false }) };
      let slice: BatchSlice;
      let count: number;
      let calibration = '';
      if (b.embedding !== undefined || b.embeddings !== undefined) {
        if (router.takesText) throw new UnirouteError('INVALID_ARGUMENT', 'this router embeds prompt texts itself: send "prompt" or "prompts"');
        if (b.max_cost !== undefined || b.min_accuracy !== undefined) throw new UnirouteError('INVALID_ARGUMENT', 'max_cost and min_accuracy calibrate lambda on prompt texts: send "prompt" or "prompts", or give "lambda"');
        const rows = b.embedding !== undefined ? [b.embedding] : b.embeddings!;
        const batch = await router.routeEmbeddings(embeddingsFromRows(rows, router.dim, b.embedding !== undefined ? 'embedding' : 'embeddings'), { ...policy, models });
        slice = { batch, offset: 0, count: rows.length };
        count = rows.length;
      } else {
        if (!router.takesText) throw new UnirouteError('INVALID_ARGUMENT', `this router takes your own ${router.dim}-d embeddings: send "embedding" or "embeddings"`);
        const texts = b.prompt !== undefined ? [b.prompt] : b.prompts!;
        texts.forEach((t, i) => checkPrompt(t, b.prompt !== undefined ? '`prompt`' : `\`prompts[${i}]\``));
        if (b.max_cost !== undefined || b.min_accuracy !== undefined) {
          // as `uniroute route --max-cost / --min-accuracy`: λ calibrated on these prompts (a share at a second λ
          // when no single one lands within 5 % of the target)
          const c = await router.calibrateLambda(texts, b.max_cost !== undefined ? { maxCost: b.max_cost } : { minAccuracy: b.min_accuracy }, { models, risk: b.risk, evidence: b.evidence });
          lambda = c.lambda;
          const batch = await router.routeBatch(texts, { ...policy, lambda, models, ...(c.mix ? { mix: c.mix } : {}) });
          slice = { batch, offset: 0, count: texts.length };
          calibration = `"calibration":{"mean_cost":${c.meanCost},"predicted_accuracy":${c.predictedAccuracy},"feasible":${c.feasible}${c.mix ? `,"mix":{"lambda":${c.mix.lambda},"share":${c.mix.share}}` : ''}},`;
        } else slice = await batcher.route(texts, policy, models);
        count = texts.length;
      }
      const allowed = models ? new Set(models) : undefined;
      const key = models ? [...allowed!].sort().join('\u0000') : undefined;
      let body = `{"lambda":${b.max_error !== undefined ? 0 : lambda},${b.max_error !== undefined ? `"max_error":${b.max_error},` : ''}${calibration}${poolVersionJson()}"decisions":[`;
      for (let i = 0; i < count; i++) body += (i ? ',' : '') + decisionJson(slice, i, allowed, key, explainAll);
      reply.type('application/json; charset=utf-8');
      return body + ']}';
    },
  );

}
