/** What the server's route plugins share (built once by buildApp). */
import { redactCredentials } from '../redact.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Router } from '../router/router.js';
import type { LivePool } from '../pool/live.js';
import type { DecisionSigner } from '../pool/feedback.js';
import type { ServerOptions } from './app.js';
import type { MicroBatcher } from './batcher.js';
import type { Gateway } from './chat.js';
import type { GatewayConfig } from './config.js';
import type { Metrics } from './metrics.js';

export interface ServerContext {
  opts: ServerOptions;
  router: Router;
  metrics: Metrics;
  batcher: MicroBatcher;
  /** The pool store the router is bound to, if any. */
  live: LivePool | undefined;
  /** Signs decision ids (with a pool store). */
  signer: DecisionSigner | undefined;
  modelTag: string;
  decisionId: (model: string, cluster: number, cell: number) => string;
  oodDefault: GatewayConfig['ood'] | undefined;
  maxPrompts: number;
  maxOutcomes: number;
  checkPrompt: (p: string, where: string) => void;
  /** After any pool change: the pool metrics. */
  poolChanged: () => void;
  /** `"pool_version":N,` for JSON answers (empty without a store). */
  poolVersionJson: () => string;
  gateway: () => Gateway;
  /** An onRequest hook: with client keys configured, a key (or the admin token) is required. */
  clientAuth: (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  /** Why the pool store is unreachable, when it is. */
  storeDown: () => string | undefined;
  setStoreDown: (why: string | undefined) => void;
}

/** Every error body: `{"error": {"code", "message"}}`, with any credential in the message redacted by its form. */
export const errorBody = (code: string, message: string) => ({ error: { code, message: redactCredentials(message) } });
