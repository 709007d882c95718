/**
 * The OpenAI Files and Batches API (a fastify plugin over src/batch): POST/GET/DELETE /v1/files,
 * GET /v1/files/:id/content, POST /v1/batches, GET /v1/batches(/:id), POST /v1/batches/:id/cancel, in the shapes
 * the `openai` client expects (errors included: {error: {message, type, param, code}}). With client keys, each
 * key sees only its own files and batches. The lines run in this process (src/batch/runner.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { Counter } from 'prom-client';
import { UnirouteError } from '../errors.js';
import { openaiError } from './anthropic.js';
import { keyOf, presentedDigest } from './chat.js';
import type { ServerContext } from './context.js';
import { sameDigest, tokenDigest } from './tokens.js';
import { ApiError, BatchService, batchJson, fileJson } from '../batch/service.js';
import { DEFAULT_BATCH, type BatchConfig } from '../batch/config.js';
import { processName } from '../batch/runner.js';

export interface BatchServerOptions {
  /** The pool store's URL (serve --pool): the batch store is its backend. */
  pool?: string;
  config?: BatchConfig;
  /** On Redis: also take chunks from the queue (default true). */
  work?: boolean;
  log?: (msg: string) => void;
}

export function batchRoutes(app: FastifyInstance, ctx: ServerContext, o: BatchServerOptions): BatchService | undefined {
  const cfg = o.config ?? DEFAULT_BATCH;
  const lines = new Counter({ name: 'uniroute_batch_lines_total', help: 'batch lines answered (ok) or failed, per LLM', labelNames: ['model', 'outcome'], registers: [ctx.metrics.registry] });
  const send = (reply: FastifyReply, status: number, message: string, code: string | null, param: string | null = null) => reply.status(status).type('application/json; charset=utf-8').send(openaiError(status, message, code, param));
  let service: BatchService;
  try {
    service = open();
  } catch (e) {
    // no store for batches (better-sqlite3 not installed, a batch folder that cannot be made): the rest of the
    // server runs; the Batch API's routes say why they are off
    if (!(e instanceof UnirouteError)) throw e;
    const why = e.message;
    o.log?.(`warning: the Batch API is off: ${why}`);
    app.decorate('batchService', { description: `off (${why})` });
    const off = (_req: FastifyRequest, reply: FastifyReply) => send(reply, 503, `the Batch API is off on this server: ${why}`, 'batch_unavailable');
    for (const url of ['/v1/files', '/v1/files/:id', '/v1/files/:id/content', '/v1/batches', '/v1/batches/:id', '/v1/batches/:id/cancel']) app.all(url, off);
    return undefined;
  }
  function open() {
    return BatchService.open({
      pool: o.pool,
      cfg,
      work: o.work,
      role: 'serve',
      log: o.log,
      engine: {
        router: ctx.router,
        gateway: ctx.gateway,
        ood: ctx.oodDefault,
        maxPromptChars: ctx.opts.maxPromptChars ?? 100_000,
        cfg,
        worker: processName('serve').replace(/[^A-Za-z0-9._]/g, ''),
        onLine: (llm, ok) => lines.inc({ model: llm ?? '-', outcome: ok ? 'ok' : 'error' }),
      },
    });
  }
  app.decorate('batchService', service);
  app.addHook('onReady', async () => service.start());
  app.addHook('onClose', async () => service.close());
  const adminDigest = ctx.opts.adminToken ? tokenDigest(ctx.opts.adminToken) : undefined;

  /** Who asks: a client key's name (scoped to its own objects), the admin (all), or anyone without client keys. */
  const who = (req: FastifyRequest): { owner: string | null; scoped: boolean } | undefined => {
    const g = ctx.gateway();
    if (g.keys.size === 0) return { owner: null, scoped: false };
    const d = presentedDigest(req.headers);
    const k = keyOf(g, d);
    if (k !== undefined) return { owner: k, scoped: true };
    if (adminDigest && sameDigest(d, adminDigest)) return { owner: null, scoped: false };
    return undefined;
  };
  const limitOf = (v: unknown, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new ApiError(400, 'invalid_request', `limit must be a whole number in [1, 10000], got ${JSON.stringify(v)}`, 'limit');
    return n;
  };
  const page = (data: Array<Record<string, unknown>>, limit: number) => {
    const has = data.length > limit;
    const d = has ? data.slice(0, limit) : data;
    return { object: 'list', data: d, first_id: (d[0]?.id as string) ?? null, last_id: (d[d.length - 1]?.id as string) ?? null, has_more: has };
  };

  app.register(async (sub) => {
    await sub.register(multipart, { limits: { fileSize: cfg.maxFileBytes + 1, files: 1, fields: 10, fieldSize: 1024 } });
    sub.setErrorHandler((err: any, req, reply) => {
      if (err instanceof ApiError) return send(reply, err.status, err.message, err.apiCode, err.param);
      if (err instanceof UnirouteError) return send(reply, err.httpStatus, err.message, err.code.toLowerCase());
      if (err.validation) return send(reply, 400, `${err.validationContext ?? 'body'}${err.validation[0]?.instancePath ?? ''} ${err.validation[0]?.message ?? err.message}`, 'invalid_request');
      if (err.code === 'FST_REQ_FILE_TOO_LARGE') return send(reply, 413, `the file is larger than ${cfg.maxFileBytes} bytes (batch.max_file_bytes)`, 'file_too_large', 'file');
      if (err.code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') return send(reply, 400, 'send the file as multipart/form-data with the fields "file" and "purpose"', 'invalid_request');
      if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return send(reply, 415, 'send application/json', 'invalid_request');
      if (err.statusCode && err.statusCode < 500) return send(reply, err.statusCode, err.message, 'invalid_request');
      req.log.error(err);
      return send(reply, 500, 'internal error', 'internal_error');
    });
    sub.addHook('onRequest', async (req, reply) => {
      const w = who(req);
      if (!w) return send(reply, 401, 'a valid API key is required (Authorization: Bearer <key>)', 'invalid_api_key');
      (req as unknown as { batchWho: typeof w }).batchWho = w;
    });
    const whoOf = (req: FastifyRequest) => (req as unknown as { batchWho: { owner: string | null; scoped: boolean } }).batchWho;

    sub.post('/v1/files', async (req, reply) => {
      if (!req.isMultipart()) return send(reply, 400, 'send the file as multipart/form-data with the fields "file" and "purpose"', 'invalid_request');
      const { owner, scoped } = whoOf(req);
      let purpose: string | undefined;
      let saved: Awaited<ReturnType<BatchService['saveUpload']>> | undefined;
      try {
        for await (const part of req.parts()) {
          if (part.type === 'file') {
            if (part.fieldname !== 'file' || saved) {
              part.file.resume();
              continue;
            }
            saved = await service.saveUpload(part.file, part.filename, owner);
          } else if (part.fieldname === 'purpose') purpose = String(part.value);
        }
      } catch (e) {
        if (saved) await service.files.remove(saved.id);
        throw e;
      }
      void scoped;
      if (!saved) return send(reply, 400, 'the field "file" is required (multipart/form-data)', 'invalid_request', 'file');
      const f = await service.commitUpload(saved, purpose);
      return fileJson(f);
    });
    sub.get<{ Querystring: { after?: string; limit?: string; purpose?: string; order?: string } }>('/v1/files', async (req) => {
      const { owner, scoped } = whoOf(req);
      const limit = limitOf(req.query.limit, 100);
      const data = await service.listFiles({ after: req.query.after, limit: limit + 1, purpose: req.query.purpose }, owner, scoped);
      return page(data, limit);
    });
    sub.get<{ Params: { id: string } }>('/v1/files/:id', async (req) => {
      const { owner, scoped } = whoOf(req);
      return (await service.file(req.params.id, owner, scoped)).json;
    });
    sub.get<{ Params: { id: string } }>('/v1/files/:id/content', async (req, reply) => {
      const { owner, scoped } = whoOf(req);
      const c = await service.content(req.params.id, owner, scoped);
      reply.header('content-disposition', `attachment; filename="${c.filename.replace(/[^A-Za-z0-9._-]/g, '_')}"`);
      return reply.type('application/jsonl').send(c.stream);
    });
    sub.delete<{ Params: { id: string } }>('/v1/files/:id', async (req) => {
      const { owner, scoped } = whoOf(req);
      return service.deleteFile(req.params.id, owner, scoped);
    });

    sub.post<{ Body: Record<string, unknown> }>('/v1/batches', { schema: { body: { type: 'object' } } }, async (req) => {
      const { owner, scoped } = whoOf(req);
      return batchJson(await service.create(req.body ?? {}, owner, scoped));
    });
    sub.get<{ Querystring: { after?: string; limit?: string } }>('/v1/batches', async (req) => {
      const { owner, scoped } = whoOf(req);
      const limit = limitOf(req.query.limit, 20);
      const data = (await service.list({ after: req.query.after, limit: limit + 1 }, owner, scoped)).map(batchJson);
      return page(data, limit);
    });
    sub.get<{ Params: { id: string } }>('/v1/batches/:id', async (req) => {
      const { owner, scoped } = whoOf(req);
      return batchJson(await service.get(req.params.id, owner, scoped));
    });
    sub.post<{ Params: { id: string } }>('/v1/batches/:id/cancel', async (req) => {
      const { owner, scoped } = whoOf(req);
      return batchJson(await service.cancel(req.params.id, owner, scoped));
    });
  });
  return service;
}
