/** Helpers shared by the command modules: option parsers, router loading, output. */
import { accessSync, constants as fsConstants, createWriteStream, existsSync, statSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { InvalidArgumentError } from 'commander';
import { UnirouteError, type ErrorCode } from '../errors.js';
import { checkCostNames, checkDatasetDir, loadDataset, type Dataset } from '../data/dataset.js';
import { Router } from '../router/router.js';
import { defaultRouterPath } from '../defaults.js';
import { LivePool } from '../pool/live.js';
import { DecisionSigner } from '../pool/feedback.js';
import { refuseIfServed } from '../pool/file-lock.js';
import { jsonLines } from '../data/jsonl.js';
import { RemoteEmbedder, embedderAccessFromEnv, mergeAccess, parseEmbedderArg, type EmbedderAccess } from '../embed/remote.js';
import type { Command } from 'commander';

/** What every command module gets from the program: where stdout goes, and whether --quiet is on. */
export interface CliContext {
  io: { stdout: NodeJS.WritableStream };
  quiet: () => boolean;
}

/**
 * A bad option value, or a bad combination of options, found by an action before its work: one coded line and
 * exit status 2, like the values commander's parsers refuse (other errors exit 1).
 */
export class UsageError extends UnirouteError {}
export const usage = (code: ErrorCode, message: string): never => {
  throw new UsageError(code, message);
};

export const intArg = (name: string, min = 0, max = Infinity) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`${name} must be a whole number ${max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`}`);
  return n;
};
/** A number in [min, max], or with `open` in (min, max), the range and the value named in the message. */
export const rangeArg = (name: string, min: number, max: number, what = '', open = false) => (v: string) => {
  const n = Number(v);
  const inside = open ? n > min && n < max : n >= min && n <= max;
  if (v.trim() === '' || !Number.isFinite(n) || !inside)
    throw new InvalidArgumentError(`${name} must be ${open ? `between ${min} and ${max} (exclusive)` : `in [${min}, ${max}]`}${what ? ` (${what})` : ''}; got ${v}`);
  return n;
};
export const numArg = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return n;
};
/**
 * --price-per-billion-params: a number >= 0, or "none" (no proxy: an LLM without a price needs an explicit cost),
 * kept as the string (commander turns a parser's null into ''); pricePerBillion() gives the library's value.
 */
export const pricePerBillionArg = (v: string): number | 'none' => (v.trim() === 'none' ? 'none' : numArg('--price-per-billion-params')(v));
export const pricePerBillion = (v: number | 'none' | undefined): number | null | undefined => (v === 'none' ? null : v);
export const PRICE_PER_BILLION_HELP =
  'proxy price (USD per 1M tokens, in and out) per billion parameters, for LLMs with a parameter count in models.csv and no list price; ' +
  'none: no proxy (default 0.0125, Llama-3-70B\'s price over its size)';
export const listArg = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
export const costArg = (v: string, prev: Record<string, number> = {}) => {
  const i = v.lastIndexOf('=');
  const c = Number(v.slice(i + 1));
  if (i <= 0 || !Number.isFinite(c) || c < 0) throw new InvalidArgumentError('--model-cost takes NAME=COST with COST >= 0');
  return { ...prev, [v.slice(0, i)]: c };
};

/** A remote embedder from `openai:MODEL@BASE_URL`; warns when the key variable is unset (a local server needs none). */
export function remoteFrom(spec: string, keyEnv: string, warn: boolean): RemoteEmbedder {
  const r = new RemoteEmbedder(parseEmbedderArg(spec), { keyEnv });
  if (warn && !process.env[keyEnv]) process.stderr.write(`note: ${keyEnv} is not set; requests to the embedding endpoint carry no API key\n`);
  return r;
}

/**
 * The options by which the operator says where a router file's remote embedder may send prompts, and with which
 * key (the file decides neither: src/embed/remote.ts).
 */
export function embedderAccessOptions(cmd: Command): Command {
  return cmd
    .option('--embedder-url <url>', 'for a router on a remote embedder: send its prompts to this endpoint (or UNIROUTE_EMBEDDER_URL); the URL recorded in the file is not used')
    .option('--trust-embedder-url', 'for a router on a remote embedder: use the endpoint recorded in the router file (or UNIROUTE_TRUST_EMBEDDER_URL=1); without this or --embedder-url, no prompt is sent anywhere')
    .option('--embedder-key-env <var>', "the environment variable holding the embedding endpoint's API key (or put the key in UNIROUTE_EMBEDDER_KEY); a key variable named in a router file is never used");
}

/** The operator's embedder access: flags over the environment (and a config's `embedder` between them). */
export function accessFrom(o: { embedderUrl?: string; trustEmbedderUrl?: boolean; embedderKeyEnv?: string }, config?: { url?: string; keyEnv?: string; trustFileUrl?: boolean }, configSource = 'the config'): EmbedderAccess {
  let a = embedderAccessFromEnv();
  if (config)
    a = mergeAccess(a, {
      url: config.url,
      trustFileUrl: config.trustFileUrl,
      keyEnv: config.keyEnv,
      from: { url: `${configSource} (embedder.url)`, trust: `${configSource} (embedder.trust_file_url)`, key: `${configSource} (embedder.key_env)` },
    });
  return mergeAccess(a, {
    url: o.embedderUrl,
    trustFileUrl: o.trustEmbedderUrl ? true : undefined,
    keyEnv: o.embedderKeyEnv,
    from: { url: '--embedder-url', trust: '--trust-embedder-url', key: '--embedder-key-env' },
  });
}

/** Which λ is in force when none is given, and what it is expected to cost and score. */
export function operatingPointText(router: Router): string {
  if (router.fixedLambda !== undefined && router.keptPrompts) return `default lambda ${router.fixedLambda} (fixed; without it, the pool's operating point)`;
  const op = router.operatingPoint();
  if (op)
    return (
      `default lambda ${op.lambda.toPrecision(4)}: the pool's operating point, recomputed on every change of the pool; on ${op.prompts} kept train prompts ` +
      `its predicted mean cost is ${op.expectedCost.toExponential(3)} (${((100 * op.expectedCost) / op.costAtZero).toFixed(0)} % of lambda 0's) ` +
      `at predicted accuracy ${op.expectedAccuracy.toFixed(3)} (lambda 0: ${op.accuracyAtZero.toFixed(3)}); --lambda 0 routes on the lowest predicted error`
    );
  const old = router.info.operatingPoint as
    | { lambda: number; expectedCost: number; expectedAccuracy: number; costAtZero: number; accuracyAtZero: number; prompts: number }
    | undefined;
  if (!old) return `default lambda ${router.defaultLambda} (no operating point was chosen for this router)`;
  return (
    `default lambda ${old.lambda.toPrecision(4)} (chosen at fit time; this router keeps no prompts to follow its pool): on ${old.prompts} train prompts, mean cost ${old.expectedCost.toExponential(3)} ` +
    `(${((100 * old.expectedCost) / old.costAtZero).toFixed(0)} % of lambda 0's) at accuracy ${old.expectedAccuracy.toFixed(3)} ` +
    `(lambda 0: ${old.accuracyAtZero.toFixed(3)}); --lambda 0 routes on the lowest predicted error`
  );
}

/** A plain-text table: columns padded to their widest cell, the first left-aligned and the others right-aligned. */
export function table(head: string[], rows: string[][]): string {
  const width = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const line = (r: string[]) => r.map((c, j) => (j === 0 ? c.padEnd(width[j]) : c.padStart(width[j]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** One warning line on stderr (input lines skipped, and the like). */
export const warnLine = (message: string) => void process.stderr.write(`uniroute: warning: ${message}\n`);

export const coverageWarning = (name: string, coverage: number) =>
  `warning: LLM "${name}" has outcomes in clusters that hold only ${(100 * coverage).toFixed(0)} % of the prompts; ` +
  'elsewhere its predicted error comes from the prior (its ability and how hard those clusters are for other LLMs), with a wide interval: route --risk 1 or more keeps it where it has shown itself. Add outcomes on more kinds of prompts.\n';

export async function loadRouter(path: string | undefined, access?: EmbedderAccess): Promise<Router> {
  const p = path ?? defaultRouterPath();
  if (!path && !existsSync(p))
    throw new UnirouteError('NOT_FOUND', `the built-in default router ${p} is missing; pass --router FILE or run \`npm run fit:default\``);
  return Router.load(p, undefined, { embedder: access ?? embedderAccessFromEnv() });
}

export const POOL_HELP =
  "the pool store: sqlite:PATH (shared by one machine's processes), redis://HOST:PORT/DB[?prefix=P] (shared by replicas) or memory:; its pool replaces the router file's (a new store starts from it)";

/**
 * The router, bound to a pool store when --pool is given (its pool then replaces the file's). `readOnly` commands
 * (models, route, export) create nothing: no sqlite file, no pool in a store. A command that changes the pool and
 * exits (`change`: add-model, remove-model, import, feedback) refuses memory:, where the change would be reported
 * with a version and lost with the process.
 */
export async function loadWithPool(
  path: string | undefined,
  pool: string | undefined,
  who = 'cli',
  o: { readOnly?: boolean; change?: string; access?: EmbedderAccess } = {},
): Promise<{ router: Router; live?: LivePool }> {
  const router = await loadRouter(path, o.access);
  if (!pool) return { router };
  if (o.change && (pool === 'memory:' || pool === 'memory'))
    usage(
      'INVALID_ARGUMENT',
      `--pool memory: lives in one process: \`uniroute ${o.change}\` would report a pool version and lose the change when it exits; ` +
        'use --pool sqlite:PATH or redis://HOST:PORT/DB (or change a router file with --router FILE / --out FILE)',
    );
  const live = await LivePool.open(router, pool, `${who}@${hostname()}`, { readOnly: o.readOnly });
  return { router, live };
}

/**
 * Reads the dataset of fit and eval (saying so on the progress line), then checks what depends on it before any
 * work: every --model-cost names one of its LLMs (a usage error, exit 2, otherwise).
 */
export async function readDataset(dir: string, modelCost: Record<string, number> | undefined, progress: { update(what: string, done: number): void }): Promise<Dataset> {
  progress.update('reading dataset', 0);
  const ds = await loadDataset(dir);
  asUsage(() => checkCostNames(ds, modelCost));
  return ds;
}

/** Runs a check of the command line; a coded error it throws becomes a usage error (exit 2, before any work). */
function asUsage(check: () => void): void {
  try {
    check();
  } catch (e) {
    if (e instanceof UnirouteError) usage(e.code, e.message);
    throw e;
  }
}

/** A dataset folder given by an option (--data), checked before any work: a usage error (exit 2) otherwise. */
export function dataDir(dir: string, flag = '--data'): string {
  asUsage(() => checkDatasetDir(dir, flag));
  return dir;
}

/**
 * An output file given by an option, checked before any work: its folder exists and is a folder, and the path is
 * not a folder itself (otherwise a long fit would end by failing to save, naming a temp file).
 */
export function checkOutputFile(path: string, flag: string): void {
  const dir = dirname(resolvePath(path));
  if (!existsSync(dir)) usage('NOT_FOUND', `${flag} ${path}: the folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) usage('INVALID_ARGUMENT', `${flag} ${path}: ${dir} is not a folder`);
  if (existsSync(path) && statSync(path).isDirectory()) usage('INVALID_ARGUMENT', `${flag} ${path} is a folder; give a file name`);
  try {
    accessSync(dir, fsConstants.W_OK);
  } catch {
    usage('IO_ERROR', `${flag} ${path}: the folder ${dir} is not writable`);
  }
  // one writer: a router file that a running server saves its pool to is not written by the CLI (FILE_IN_USE)
  refuseIfServed(path);
}

/**
 * Feedback settings from the environment: UNIROUTE_FEEDBACK_TOKEN (the bearer token of POST /v1/feedback) and
 * UNIROUTE_FEEDBACK_SECRET (signs decision ids; the same on every replica and for `uniroute feedback`; without it
 * ids hold only for one server process).
 */
export function feedbackOptions(halfLifeHours?: number) {
  if (halfLifeHours !== undefined && !(halfLifeHours > 0)) throw new UnirouteError('INVALID_ARGUMENT', '--feedback-half-life must be a number of hours > 0');
  const secret = process.env.UNIROUTE_FEEDBACK_SECRET;
  return {
    ...(secret ? { feedbackSigner: new DecisionSigner(secret) } : {}),
    ...(process.env.UNIROUTE_FEEDBACK_TOKEN ? { feedbackToken: process.env.UNIROUTE_FEEDBACK_TOKEN } : {}),
    ...(halfLifeHours !== undefined ? { feedbackHalfLifeMs: halfLifeHours * 3_600_000 } : {}),
  };
}

export const cliUser = () => `cli:${process.env.USER ?? 'unknown'}@${hostname()}`;

/** Reads {"id", "embedding": [..]} lines into a map; every row must have the same length. */
export async function readEmbeddings(file: string): Promise<{ dim: number; rows: Map<string, Float32Array> }> {
  const rows = new Map<string, Float32Array>();
  let dim = -1;
  for await (const { rec, line } of jsonLines(file)) {
    if (rec?.id === undefined || !Array.isArray(rec.embedding))
      throw new UnirouteError('INVALID_ARGUMENT', `${file}:${line}: needs "id" and an "embedding" array`);
    if (dim < 0) dim = rec.embedding.length;
    if (rec.embedding.length !== dim || dim === 0)
      throw new UnirouteError('DIMENSION_MISMATCH', `${file}:${line}: embedding has ${rec.embedding.length} values; earlier rows have ${dim}`);
    const v = Float32Array.from(rec.embedding, Number);
    if (!v.every(Number.isFinite)) throw new UnirouteError('NON_FINITE', `${file}:${line}: embedding has a non-finite value`);
    rows.set(String(rec.id), v);
  }
  if (dim < 0) throw new UnirouteError('INVALID_ARGUMENT', `${file} has no embedding`);
  return { dim, rows };
}

/** Every dataset prompt's embedding from a {"id", "embedding"} file, in dataset order. */
export async function promptEmbeddingsOf(ds: { prompts: Array<{ id: string }> }, file: string) {
  const e = await readEmbeddings(file);
  const data = new Float32Array(ds.prompts.length * e.dim);
  ds.prompts.forEach((p, i) => {
    const v = e.rows.get(p.id);
    if (!v) throw new UnirouteError('INVALID_ARGUMENT', `${file} has no embedding for prompt "${p.id}"`);
    data.set(v, i * e.dim);
  });
  return { spec: { kind: 'precomputed' as const, dim: e.dim }, data };
}


/**
 * Opens an output file for streaming: a file that cannot be created is a coded one-line error before any work,
 * and a later write error ends the command with one too (never an unhandled 'error' event).
 */
export async function openOutput(path: string): Promise<NodeJS.WritableStream> {
  const ws = createWriteStream(path);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', (e) => reject(new UnirouteError('IO_ERROR', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
  });
  ws.on('error', (e) => {
    process.stderr.write(`uniroute: IO_ERROR: writing ${path} failed: ${(e as NodeJS.ErrnoException).code ?? e.message}\n`);
    process.exit(1);
  });
  return ws;
}

export function writeLine(out: NodeJS.WritableStream, s: string): Promise<void> | void {
  if (!out.write(s)) return once(out, 'drain').then(() => undefined);
}
