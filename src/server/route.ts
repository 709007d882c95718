/** POST /v1/route: decisions for prompts (or embeddings), in the CLI's decision shape (a fastify plugin). */
import type { FastifyInstance } from 'fastify';
import { routeResponseSchema } from './schemas.js';
import { UnirouteError, didYouMean } from '../errors.js';
import { embeddingsFromRows } from '../embed/embedder.js';
import { explainRow } from '../router/router.js';
import type { BatchSlice } from './batcher.js';
import type { ServerContext } from './context.js';

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
      out += `${first ? '' : ','}${q[j]}:{"predicted_error":${c.predictedError},"cost":${c.cost},"outcomes":${c.outcomes},"evidence":${c.evidence},"interval":[${c.interval[0]},${c.interval[1]}]}`;
      first = false;
    }
    return out + '}';
  };
  const decisionJson = (s: BatchSlice, i: number, allowed?: Set<string>, allowedKey?: string) => {
    const b = s.batch;
    const { c, row, cluster: k, predictedError } = chosen(s, i);
    let cands: string;
    // with a learned map or a difficulty model the predicted errors differ per prompt: no per-cluster cache
    if (router.map || router.prior?.difficulty) cands = candidatesJson(b, row, allowed);
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
    return `{${id}"model":${names(b)[c]},"cluster":${k},"distance":${b.distance[row]},"predicted_error":${predictedError},"cost":${b.costs[c]},"ood":${ood},"candidates":${cands}}`;
  };

  // ---- routing --------------------------------------------------------------------------------------------------
  app.post<{
    Body: { prompt?: string; prompts?: string[]; embedding?: number[]; embeddings?: number[][]; lambda?: number; tradeoff?: number; models?: string[]; risk?: number; evidence?: 'prefer' | 'ignore'; max_error?: number; ood?: false | { quantile?: number; fallback?: string } };
  }>(
    '/v1/route',
    {
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
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
            // out-of-distribution handling for this request (default: the server's config)
            ood: {
              oneOf: [
                { const: false },
                { type: 'object', additionalProperties: false, properties: { quantile: { type: 'number', minimum: 0.5, maximum: 1 }, fallback: { type: 'string', minLength: 1, maxLength: 256 } } },
              ],
            },
          },
          oneOf: [{ required: ['prompt'] }, { required: ['prompts'] }, { required: ['embedding'] }, { required: ['embeddings'] }],
        },
        // the body is written by hand (decisionJson) for speed, so this documents it; a test validates responses
        response: { 200: routeResponseSchema },
      },
    },
    async (req, reply) => {
      const b = req.body;
      if (b.tradeoff !== undefined && b.lambda !== undefined) throw new UnirouteError('INVALID_ARGUMENT', 'give `lambda` or `tradeoff`, not both');
      const lambda = b.tradeoff !== undefined ? router.lambdaForTradeoff(b.tradeoff) : checkLambda(b.lambda);
      const models = checkModels(b.models);
      if (router.size === 0) throw new UnirouteError('NO_MODELS', 'the pool is empty');
      if (b.max_error !== undefined && (b.lambda !== undefined || b.tradeoff !== undefined)) throw new UnirouteError('INVALID_ARGUMENT', 'give `lambda` (or `tradeoff`) or `max_error`, not both');
      const policy = { lambda, risk: b.risk, evidence: b.evidence, ood: b.ood ?? oodDefault, ...(b.max_error !== undefined ? { maxError: b.max_error } : {}) };
      let slice: BatchSlice;
      let count: number;
      if (b.embedding !== undefined || b.embeddings !== undefined) {
        if (router.takesText) throw new UnirouteError('INVALID_ARGUMENT', 'this router embeds prompt texts itself: send "prompt" or "prompts"');
        const rows = b.embedding !== undefined ? [b.embedding] : b.embeddings!;
        const batch = await router.routeEmbeddings(embeddingsFromRows(rows, router.dim, b.embedding !== undefined ? 'embedding' : 'embeddings'), { ...policy, models });
        slice = { batch, offset: 0, count: rows.length };
        count = rows.length;
      } else {
        if (!router.takesText) throw new UnirouteError('INVALID_ARGUMENT', `this router takes your own ${router.dim}-d embeddings: send "embedding" or "embeddings"`);
        const texts = b.prompt !== undefined ? [b.prompt] : b.prompts!;
        texts.forEach((t, i) => checkPrompt(t, b.prompt !== undefined ? '`prompt`' : `\`prompts[${i}]\``));
        slice = await batcher.route(texts, policy, models);
        count = texts.length;
      }
      const allowed = models ? new Set(models) : undefined;
      const key = models ? [...allowed!].sort().join('\u0000') : undefined;
      let body = `{"lambda":${b.max_error !== undefined ? 0 : lambda},${b.max_error !== undefined ? `"max_error":${b.max_error},` : ''}${poolVersionJson()}"decisions":[`;
      for (let i = 0; i < count; i++) body += (i ? ',' : '') + decisionJson(slice, i, allowed, key);
      reply.type('application/json; charset=utf-8');
      return body + ']}';
    },
  );

}
