/**
 * The JSON shapes of the HTTP API, as JSON Schema: one decision shape (shared with `uniroute route`'s output lines
 * and the library's `decisionRecord`), the route, models and health responses, and the error body. The routes
 * declare them (`schema.response`); a test validates live responses and the CLI's lines against them.
 */

/** One candidate LLM of an explained decision. */
export const candidateSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['predicted_error', 'cost', 'outcomes', 'evidence', 'interval'],
  properties: {
    predicted_error: { type: 'number', minimum: 0, maximum: 1 },
    cost: { type: 'number', minimum: 0 },
    /** outcomes of the LLM in the prompt's cluster (fractional once production feedback decays) */
    outcomes: { type: 'number', minimum: 0 },
    /** whether the LLM has outcomes where the prompt lies */
    evidence: { type: 'boolean' },
    /** the 95 % interval of the LLM's error in the prompt's cluster (the posterior's), moved by the prompt's difficulty */
    interval: { type: 'array', items: { type: 'number', minimum: 0, maximum: 1 }, minItems: 2, maxItems: 2 },
  },
} as const;

/** A decision: the CLI writes one per line (with the input's `id`), HTTP returns them in `decisions`. */
export const decisionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['model', 'cluster', 'distance', 'predicted_error', 'cost', 'ood'],
  properties: {
    /** the input line's id (CLI) */
    id: {},
    /** a signed id to send production feedback with (HTTP, when feedback is enabled) */
    decision_id: { type: 'string' },
    model: { type: 'string', minLength: 1 },
    cluster: { type: 'integer', minimum: 0 },
    /** Euclidean distance to the nearest centroid */
    distance: { type: 'number', minimum: 0 },
    predicted_error: { type: 'number', minimum: 0, maximum: 1 },
    /** the chosen LLM's cost per query (USD) */
    cost: { type: 'number', minimum: 0 },
    /** farther from its nearest centroid than the out-of-distribution quantile: decided by the OOD fallback */
    ood: { type: 'boolean' },
    /** decided by an exploration draw from the posterior (only when true) */
    explored: { type: 'boolean' },
    /** why, when the decision is not the plain rule on the prompt's cluster (explained decisions) */
    reason: { type: 'string' },
    /** every allowed LLM, keyed by name (HTTP always; the CLI with --explain) */
    candidates: { type: 'object', additionalProperties: candidateSchema },
  },
} as const;

export const errorSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: ['string', 'null'] },
        message: { type: 'string' },
        // OpenAI's shape on /v1/chat/completions
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
      },
    },
  },
} as const;

export const routeResponseSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['lambda', 'decisions'],
  properties: {
    lambda: { type: 'number', minimum: 0 },
    max_error: { type: 'number', minimum: 0, maximum: 1 },
    /** with max_cost / min_accuracy: what the calibrated λ gives on the request's prompts */
    calibration: {
      type: 'object',
      additionalProperties: false,
      required: ['mean_cost', 'predicted_accuracy', 'feasible'],
      properties: {
        mean_cost: { type: 'number', minimum: 0 },
        predicted_accuracy: { type: 'number', minimum: 0, maximum: 1 },
        feasible: { type: 'boolean' },
        mix: { type: 'object', additionalProperties: false, required: ['lambda', 'share'], properties: { lambda: { type: 'number', minimum: 0 }, share: { type: 'number', minimum: 0, maximum: 1 } } },
      },
    },
    pool_version: { type: 'integer', minimum: 0 },
    decisions: { type: 'array', items: decisionSchema },
  },
} as const;

export const modelsResponseSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['object', 'data'],
  properties: {
    object: { const: 'list' },
    pool_version: { type: 'integer', minimum: 0 },
    /** the default operating point in force for this pool (recomputed on every change of the pool) */
    operating_point: {
      type: 'object',
      additionalProperties: false,
      required: ['lambda'],
      properties: {
        lambda: { type: 'number', minimum: 0 },
        fixed: { type: 'boolean' },
        expected_cost: { type: 'number' },
        expected_accuracy: { type: 'number' },
        cost_at_zero: { type: 'number' },
        accuracy_at_zero: { type: 'number' },
        prompts: { type: 'integer', minimum: 0 },
      },
    },
    data: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'object', 'kind'],
        properties: {
          id: { type: 'string' },
          object: { const: 'model' },
          created: { type: 'integer' },
          owned_by: { type: 'string' },
          /** llm: in the pool; alias: "uniroute" or a preset ("uniroute/<name>"); upstream: reachable by name, not in the pool */
          kind: { enum: ['llm', 'alias', 'upstream'] },
          description: { type: 'string' },
          cost_per_query: { type: 'number', minimum: 0 },
          overall_error: { type: 'number', minimum: 0, maximum: 1 },
          outcomes: { type: 'number', minimum: 0 },
          coverage: { type: 'number', minimum: 0, maximum: 1 },
          upstream: { type: 'boolean' },
        },
        if: { properties: { kind: { const: 'llm' } } },
        then: { required: ['cost_per_query', 'overall_error', 'outcomes', 'coverage', 'upstream'] },
      },
    },
  },
} as const;

export const readyResponseSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: {
    status: { enum: ['ready', 'degraded', 'not ready'] },
    reason: { type: 'string' },
    models: { type: 'integer', minimum: 0 },
    clusters: { type: 'integer', minimum: 1 },
    pool_version: { type: 'integer', minimum: 0 },
    pool_store: { type: 'string' },
  },
} as const;

export const healthResponseSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: { status: { const: 'ok' } },
} as const;
