/** The `uniroute` command. */
import { createWriteStream, existsSync } from 'node:fs';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { basename, join, resolve as resolvePath } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { UnirouteError } from '../errors.js';
import { backendInfo, getThreads, setBackend, setThreads } from '../engine/native.js';
import { addCostRow, costFrom, loadDataset, newCostAcc, readLabels, readModels, readPrompts } from '../data/dataset.js';
import { fitRouter } from '../router/fit.js';
import { Router, decisionJson, explainRow, type RouteBatch } from '../router/router.js';
import { defaultRouterPath } from '../defaults.js';
import { Progress } from './progress.js';
import { LivePool } from '../pool/live.js';
import { DecisionSigner, reportedOutcome } from '../pool/feedback.js';
import { jsonLineBatches, jsonLines, readRecords } from '../data/jsonl.js';
import { RemoteEmbedder, parseEmbedderArg } from '../embed/remote.js';

const intArg = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}`);
  return n;
};
const numArg = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
  return n;
};
const listArg = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const costArg = (v: string, prev: Record<string, number> = {}) => {
  const i = v.lastIndexOf('=');
  const c = Number(v.slice(i + 1));
  if (i <= 0 || !Number.isFinite(c) || c < 0) throw new InvalidArgumentError('--model-cost takes NAME=COST with COST >= 0');
  return { ...prev, [v.slice(0, i)]: c };
};

/** A remote embedder from `openai:MODEL@BASE_URL`; warns when the key variable is unset (a local server needs none). */
function remoteFrom(spec: string, keyEnv: string, warn: boolean): RemoteEmbedder {
  const r = new RemoteEmbedder(parseEmbedderArg(spec, keyEnv));
  if (warn && !process.env[keyEnv]) process.stderr.write(`note: ${keyEnv} is not set; requests to the embedding endpoint carry no API key\n`);
  return r;
}

/** Which λ is in force when none is given, and what it was expected to cost and score. */
function operatingPointText(router: Router): string {
  const op = router.info.operatingPoint as
    | { lambda: number; expectedCost: number; expectedAccuracy: number; costAtZero: number; accuracyAtZero: number; prompts: number }
    | undefined;
  if (!op) return `default lambda ${router.defaultLambda} (no operating point was chosen for this router)`;
  return (
    `default lambda ${op.lambda.toPrecision(4)}: on ${op.prompts} train prompts, mean cost ${op.expectedCost.toExponential(3)} ` +
    `(${((100 * op.expectedCost) / op.costAtZero).toFixed(0)} % of lambda 0's) at accuracy ${op.expectedAccuracy.toFixed(3)} ` +
    `(lambda 0: ${op.accuracyAtZero.toFixed(3)}); --lambda 0 routes on the lowest predicted error`
  );
}

/** A plain-text table: columns padded to their widest cell, the first left-aligned and the others right-aligned. */
function table(head: string[], rows: string[][]): string {
  const width = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const line = (r: string[]) => r.map((c, j) => (j === 0 ? c.padEnd(width[j]) : c.padStart(width[j]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** One warning line on stderr (input lines skipped, and the like). */
const warnLine = (message: string) => void process.stderr.write(`uniroute: warning: ${message}\n`);

const coverageWarning = (name: string, coverage: number) =>
  `warning: LLM "${name}" has outcomes in clusters that hold only ${(100 * coverage).toFixed(0)} % of the prompts; ` +
  'elsewhere it is chosen only when no allowed LLM with outcomes there is (route --evidence ignore to change that). Add outcomes on more kinds of prompts.\n';

async function loadRouter(path: string | undefined): Promise<Router> {
  const p = path ?? defaultRouterPath();
  if (!path && !existsSync(p))
    throw new UnirouteError('NOT_FOUND', `the built-in default router ${p} is missing; pass --router FILE or run \`npm run fit:default\``);
  return Router.load(p);
}

const POOL_HELP =
  "the pool store: sqlite:PATH (shared by one machine's processes), redis://HOST:PORT/DB[?prefix=P] (shared by replicas) or memory:; its pool replaces the router file's (a new store starts from it)";

/** The router, bound to a pool store when --pool is given (its pool then replaces the file's). */
async function loadWithPool(path: string | undefined, pool: string | undefined, who = 'cli'): Promise<{ router: Router; live?: LivePool }> {
  const router = await loadRouter(path);
  if (!pool) return { router };
  const live = await LivePool.open(router, pool, `${who}@${hostname()}`);
  return { router, live };
}

/**
 * Feedback settings from the environment: UNIROUTE_FEEDBACK_TOKEN (the bearer token of POST /v1/feedback) and
 * UNIROUTE_FEEDBACK_SECRET (signs decision ids; the same on every replica and for `uniroute feedback`; without it
 * ids hold only for one server process).
 */
function feedbackOptions(halfLifeHours?: number) {
  if (halfLifeHours !== undefined && !(halfLifeHours > 0)) throw new UnirouteError('INVALID_ARGUMENT', '--feedback-half-life must be a number of hours > 0');
  const secret = process.env.UNIROUTE_FEEDBACK_SECRET;
  return {
    ...(secret ? { feedbackSigner: new DecisionSigner(secret) } : {}),
    ...(process.env.UNIROUTE_FEEDBACK_TOKEN ? { feedbackToken: process.env.UNIROUTE_FEEDBACK_TOKEN } : {}),
    ...(halfLifeHours !== undefined ? { feedbackHalfLifeMs: halfLifeHours * 3_600_000 } : {}),
  };
}

const cliUser = () => `cli:${process.env.USER ?? 'unknown'}@${hostname()}`;

/** Reads {"id", "embedding": [..]} lines into a map; every row must have the same length. */
async function readEmbeddings(file: string): Promise<{ dim: number; rows: Map<string, Float32Array> }> {
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
async function promptEmbeddingsOf(ds: { prompts: Array<{ id: string }> }, file: string) {
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
async function openOutput(path: string): Promise<NodeJS.WritableStream> {
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

function writeLine(out: NodeJS.WritableStream, s: string): Promise<void> | void {
  if (!out.write(s)) return once(out, 'drain').then(() => undefined);
}

export function buildProgram(io: { stdout: NodeJS.WritableStream } = { stdout: process.stdout }): Command {
  const program = new Command('uniroute')
    .description('Route each prompt to the cheapest LLM likely to answer it well; onboard unseen LLMs from a few hundred validation outcomes.')
    .option('--threads <n>', 'native worker threads (0 = all cores)', intArg('--threads'), 0)
    .option('-q, --quiet', 'no progress on stderr')
    .addOption(new Option('--backend <b>', 'engine backend (or UNIROUTE_BACKEND); cuda fails with the reason when no GPU is usable').choices(['auto', 'cpu', 'cuda']))
    .showHelpAfterError('(run with --help for usage)')
    .hook('preAction', (cmd) => {
      const t = cmd.opts().threads;
      if (t) setThreads(t);
      const b = cmd.opts().backend;
      if (b) setBackend(b);
    });
  const quiet = () => !!program.opts().quiet;

  program
    .command('fit')
    .description('fit a router on a dataset (prompts.jsonl, labels.csv, models.csv); K is chosen on validation prompts unless --clusters is given')
    .requiredOption('--data <dir>', 'dataset folder')
    .requiredOption('--out <file>', 'where to write the router (.gz to compress)')
    .option('--train-models <list>', 'comma-separated training LLMs (default: all in labels.csv)', listArg)
    .option('--exclude-models <list>', 'comma-separated LLMs to leave out (e.g. one to add later as unseen)', listArg)
    .option('--clusters <k>', 'number of clusters, or "auto"', 'auto')
    .option('--seed <n>', 'random seed', intArg('--seed'), 1)
    .option('--val-fraction <f>', 'share of prompts held out to compute the pool\'s error vectors', numArg('--val-fraction'), 0.25)
    .option('--prior-strength <a>', 'shrink sparse clusters toward the LLM\'s overall error (0 = plain mean; default: chosen on validation with K)', numArg('--prior-strength'))
    .option('--dim <d>', 'embedding dimension', intArg('--dim', 1), 256)
    .option('--model-cost <name=cost>', 'explicit cost per query for an LLM (repeatable)', costArg)
    .option('--price-per-billion-params <usd>', 'proxy price (USD per 1M tokens) per billion parameters for LLMs with no list price', numArg('--price-per-billion-params'))
    .addOption(new Option('--method <m>', 'cluster map: nearest centroid (kmeans) or the learned map').choices(['kmeans', 'learned-map']).default('kmeans'))
    .option('--embeddings <jsonl>', 'use your own prompt embeddings ({"id", "embedding"} lines, one per prompt) instead of the built-in embedder')
    .option('--embedding-name <name>', 'name of the embedding model (recorded in the router)')
    .option('--embedder <spec>', 'embed through an OpenAI-compatible endpoint instead: openai:MODEL@BASE_URL (recorded in the router; route and serve use it too)')
    .option('--embedder-key-env <name>', 'environment variable holding the endpoint\'s API key', 'OPENAI_API_KEY')
    .option('--json', 'print the full fit report as JSON instead of the summary')
    .action(async (o) => {
      if (o.embedder && o.embeddings) throw new UnirouteError('INVALID_ARGUMENT', 'give either --embedder or --embeddings, not both');
      // option values are checked before any work starts
      const clusters = o.clusters === 'auto' ? 'auto' : intArg('--clusters', 1)(o.clusters);
      const remote = o.embedder ? remoteFrom(o.embedder, o.embedderKeyEnv, !quiet()) : undefined;
      const progress = new Progress(!quiet());
      progress.update('reading dataset', 0);
      const ds = await loadDataset(o.data);
      let embeddings: { dim: number; data: Float32Array; name?: string } | undefined;
      if (o.embeddings) {
        const pe = await promptEmbeddingsOf(ds, o.embeddings);
        embeddings = { dim: pe.spec.dim, data: pe.data, name: o.embeddingName };
      }
      const { router, report } = await fitRouter(ds, {
        trainModels: o.trainModels,
        excludeModels: o.excludeModels,
        clusters,
        seed: o.seed,
        valFraction: o.valFraction,
        priorStrength: o.priorStrength,
        embedder: { dim: o.dim },
        costs: o.modelCost,
        pricePerBillionParams: o.pricePerBillionParams,
        embeddings,
        remoteEmbedder: remote,
        method: o.method,
        onProgress: (s, d, t) => progress.update(s, d, t),
      });
      await router.save(o.out);
      for (const m of report.models) if (m.coverage < 0.5) process.stderr.write(coverageWarning(m.name, m.coverage));
      progress.done(`fitted ${report.clusters} clusters on ${report.trainPrompts} prompts, ${report.models.length} LLMs profiled on ${report.valPrompts} validation prompts in ${report.seconds.toFixed(1)} s -> ${o.out}`);
      if (o.json) await writeLine(io.stdout, JSON.stringify({ out: o.out, ...report }) + '\n');
      else {
        const grid = report.kSearch.length > 1 ? ` (chosen on validation prompts among ${[...new Set(report.kSearch.map((x) => x.k))].join(', ')})` : '';
        const lines = [
          `router     ${o.out}, fitted in ${report.seconds.toFixed(1)} s`,
          `clusters   ${report.clusters}${grid}; prior strength ${report.priorStrength}`,
          `prompts    ${report.trainPrompts} train, ${report.valPrompts} validation`,
          `operating  ${operatingPointText(router)}`,
          '',
          table(
            ['LLM', 'cost/query', 'outcomes', 'coverage'],
            report.models.map((m) => [m.name, m.costPerQuery.toExponential(3), String(m.validationOutcomes), `${(100 * m.coverage).toFixed(0)} %`]),
          ),
          '(--json for the full report)',
        ];
        await writeLine(io.stdout, lines.join('\n') + '\n');
      }
    });

  program
    .command('add-model')
    .description('take an unseen LLM into the pool from its outcomes on validation prompts, without refitting anything')
    .option('--router <file>', 'router file to update (default: the built-in router, which then needs --out)')
    .requiredOption('--name <name>', 'the LLM\'s name')
    .option('--labels <csv>', 'outcomes as prompt_id,model,correct[,cost_usd] rows (texts looked up in --data)')
    .option('--data <dir>', 'dataset folder holding prompts.jsonl (and models.csv for list prices)')
    .option('--outcomes <jsonl>', 'outcomes as {"text", "correct"} lines ({"embedding", "correct"} for a router on your own embeddings)')
    .option('--embeddings <jsonl>', 'with --labels, for a router on your own embeddings: {"id", "embedding"} lines')
    .option('--cost <usd>', 'cost per query (wins over anything in the files)', numArg('--cost'))
    .option('--price-per-billion-params <usd>', 'with --labels: proxy price (USD per 1M tokens) per billion parameters when models.csv has no list price', numArg('--price-per-billion-params'))
    .option('--out <file>', 'write the updated router here instead of in place')
    .option('--replace', 'replace the LLM if it is already in the pool (its old outcomes are dropped)')
    .option('--json', 'print the added LLM as JSON instead of the summary')
    .addOption(new Option('--max-errors <n>', 'with --outcomes: stop after this many bad lines (fewer are skipped with a warning; 0 = never stop)').argParser(intArg('--max-errors', 0)).default(10))
    .option('--pool <url>', POOL_HELP)
    .option('--if-version <n>', 'with --pool: change only if the pool is at this version', intArg('--if-version'))
    .action(async (o) => {
      if (!!o.labels === !!o.outcomes) throw new UnirouteError('INVALID_ARGUMENT', 'give exactly one of --labels or --outcomes');
      if (!o.router && !o.out && !o.pool) throw new UnirouteError('INVALID_ARGUMENT', 'the built-in router is read-only: pass --pool URL, --router FILE or --out FILE');
      const { router, live } = await loadWithPool(o.router, o.pool);
      const outcomes: Array<{ text?: string; embedding?: ArrayLike<number>; correct: number }> = [];
      let cost: number | undefined = o.cost;
      if (o.labels) {
        if (!o.data) throw new UnirouteError('INVALID_ARGUMENT', '--labels needs --data DIR to look up the prompt texts');
        const prompts = new Map((await readPrompts(join(o.data, 'prompts.jsonl'))).map((p) => [p.id, p.text]));
        const emb = router.takesText ? undefined : o.embeddings ? await readEmbeddings(o.embeddings) : undefined;
        if (!router.takesText && !emb) throw new UnirouteError('INVALID_ARGUMENT', 'this router works on your own embeddings: pass --embeddings FILE with --labels');
        const acc = newCostAcc();
        const others = new Set<string>();
        for await (const r of readLabels(o.labels)) {
          if (r.model !== o.name) {
            others.add(r.model);
            continue;
          }
          const text = prompts.get(r.promptId);
          if (text === undefined) throw new UnirouteError('BAD_DATASET', `${o.labels}: prompt_id "${r.promptId}" is not in ${o.data}/prompts.jsonl`);
          if (emb) {
            const e = emb.rows.get(r.promptId);
            if (!e) throw new UnirouteError('INVALID_ARGUMENT', `${o.embeddings} has no embedding for prompt "${r.promptId}"`);
            outcomes.push({ embedding: e, correct: r.correct });
          } else outcomes.push({ text, correct: r.correct });
          addCostRow(acc, r, text);
        }
        if (outcomes.length === 0)
          throw new UnirouteError('UNKNOWN_MODEL', `${o.labels} has no row for model "${o.name}"${others.size ? ` (it has: ${[...others].slice(0, 10).join(', ')})` : ''}`);
        if (cost === undefined)
          cost = costFrom(o.name, acc, (await readModels(join(o.data, 'models.csv'))).get(o.name), { pricePerBillionParams: o.pricePerBillionParams });
      } else {
        const what = router.takesText ? 'a string "text"' : 'an "embedding" array';
        const good = await readRecords(
          o.outcomes,
          (rec, line) => {
            if ((router.takesText ? typeof rec?.text !== 'string' : !Array.isArray(rec?.embedding)) || !(Number(rec.correct) >= 0 && Number(rec.correct) <= 1))
              throw new UnirouteError('INVALID_ARGUMENT', `${o.outcomes}:${line}: needs ${what} and "correct" in [0, 1]`);
            return router.takesText ? { text: rec.text as string, correct: Number(rec.correct) } : { embedding: rec.embedding as number[], correct: Number(rec.correct) };
          },
          { maxErrors: o.maxErrors, warn: warnLine },
        );
        outcomes.push(...good);
      }
      if (cost === undefined)
        throw new UnirouteError('NO_COST', `no cost for LLM "${o.name}": pass --cost (no cost_usd in the labels and no list price in models.csv)`);
      if (router.has(o.name) && !o.replace) throw new UnirouteError('DUPLICATE_MODEL', `LLM "${o.name}" is already in the pool: pass --replace to replace it`);
      let info;
      let dest: string;
      if (live) {
        try {
          info = await live.addModel(o.name, { costPerQuery: cost, outcomes }, { replace: !!o.replace, ifVersion: o.ifVersion, by: cliUser() });
        } finally {
          await live.close();
        }
        dest = `${live.store.description} (pool version ${info.version})`;
      } else {
        if (router.has(o.name)) router.removeModel(o.name);
        info = await router.addModel(o.name, { costPerQuery: cost, outcomes });
        dest = o.out ?? o.router;
        await router.save(dest);
      }
      if (info.coverage < 0.5) process.stderr.write(coverageWarning(info.name, info.coverage));
      if (o.json) await writeLine(io.stdout, JSON.stringify({ name: info.name, costPerQuery: info.costPerQuery, outcomes: info.outcomes, overallError: info.overallError, coverage: info.coverage }) + '\n');
      else
        await writeLine(
          io.stdout,
          `added "${info.name}" -> ${dest}: ${info.outcomes} outcomes, predicted error ${info.overallError.toFixed(3)} over the training distribution, ` +
            `cost ${info.costPerQuery.toExponential(3)} per query, coverage ${(100 * info.coverage).toFixed(0)} % of the prompts\n`,
        );
    });

  program
    .command('remove-model')
    .description('remove an LLM from the pool')
    .option('--router <file>', 'router file to update')
    .requiredOption('--name <name>', 'the LLM to remove')
    .option('--out <file>', 'write the updated router here instead of in place')
    .option('--pool <url>', POOL_HELP)
    .option('--if-version <n>', 'with --pool: change only if the pool is at this version', intArg('--if-version'))
    .action(async (o) => {
      if (!o.router && !o.out && !o.pool) throw new UnirouteError('INVALID_ARGUMENT', 'the built-in router is read-only: pass --pool URL, --router FILE or --out FILE');
      const { router, live } = await loadWithPool(o.router, o.pool);
      if (live) {
        try {
          if (!router.has(o.name)) router.removeModel(o.name); // UNKNOWN_MODEL, with a did-you-mean
          const v = await live.removeModel(o.name, { ifVersion: o.ifVersion, by: cliUser() });
          if (!quiet()) process.stderr.write(`removed "${o.name}"; ${router.size} LLMs left in ${live.store.description} (pool version ${v})\n`);
        } finally {
          await live.close();
        }
        return;
      }
      router.removeModel(o.name);
      await router.save(o.out ?? o.router);
      if (!quiet()) process.stderr.write(`removed "${o.name}"; ${router.size} LLMs left\n`);
    });

  program
    .command('export')
    .description('write a router file whose pool is the store\'s (the distributable form of a live pool)')
    .requiredOption('--router <file>', 'the router file the pool belongs to (its fitted model)')
    .requiredOption('--pool <url>', 'the pool store: sqlite:PATH, redis://HOST:PORT/DB or memory:')
    .requiredOption('--out <file>', 'the router file to write (.gz to gzip it)')
    .action(async (o) => {
      const { router, live } = await loadWithPool(o.router, o.pool);
      await live!.close();
      await router.save(o.out);
      if (!quiet()) process.stderr.write(`exported ${router.size} LLMs (pool version ${live!.version} of ${live!.store.description}) -> ${o.out}\n`);
    });

  program
    .command('import')
    .description('make the router file\'s pool the store\'s pool, in one change (every LLM checked first)')
    .requiredOption('--router <file>', 'the router file whose pool to import')
    .requiredOption('--pool <url>', 'the pool store: sqlite:PATH, redis://HOST:PORT/DB or memory:')
    .option('--if-version <n>', 'only if the store\'s pool is at this version', intArg('--if-version'))
    .action(async (o) => {
      const file = await loadRouter(o.router);
      const entries = file.poolEntries();
      const { live } = await loadWithPool(o.router, o.pool);
      try {
        const v = await live!.importPool(entries, { ifVersion: o.ifVersion, by: cliUser() });
        if (!quiet()) process.stderr.write(`imported ${entries.length} LLMs from ${o.router} into ${live!.store.description} (pool version ${v})\n`);
      } finally {
        await live!.close();
      }
    });

  program
    .command('feedback')
    .description('add production outcomes to the pool in bulk: JSONL lines {"decision_id", "correct": 0|1 or "score": [0, 1], "model"?} (decision ids from /v1/route or x-uniroute-decision-id)')
    .argument('<file>', 'the JSONL file, or - for stdin')
    .option('--router <file>', 'router file (default: the built-in router)')
    .requiredOption('--pool <url>', 'the pool store the decisions were made on: sqlite:PATH')
    .option('--half-life <hours>', 'decay an LLM\'s older evidence with this half-life first', numArg('--half-life'))
    .action(async (file, o) => {
      const secret = process.env.UNIROUTE_FEEDBACK_SECRET;
      if (!secret) throw new UnirouteError('INVALID_ARGUMENT', 'set UNIROUTE_FEEDBACK_SECRET to the servers\' secret: it checks the decision ids');
      const signer = new DecisionSigner(secret);
      const { live } = await loadWithPool(o.router, o.pool);
      const tag = live!.modelHash.slice(0, 16);
      const tally = new Map<string, number>();
      const count = (k: string) => tally.set(k, (tally.get(k) ?? 0) + 1);
      try {
        for await (const { rec, line, malformed } of jsonLines(file, 'INVALID_ARGUMENT', { tolerant: true })) {
          try {
            if (malformed || !rec || typeof rec !== 'object') throw new UnirouteError('INVALID_ARGUMENT', 'not a JSON object');
            await live!.feedback({ ...reportedOutcome(rec, signer, tag), halfLifeMs: o.halfLife ? o.halfLife * 3_600_000 : undefined });
            count('counted');
          } catch (e) {
            const c = e instanceof UnirouteError ? e.code : 'ERROR';
            count(c);
            if (c !== 'ALREADY_COUNTED' && !quiet()) process.stderr.write(`${file}:${line}: ${c}: ${(e as Error).message}\n`);
          }
        }
      } finally {
        await live!.close();
      }
      const summary = [...tally].map(([k, n]) => `${n} ${k === 'counted' ? 'counted' : k}`).join(', ') || 'no lines';
      if (!quiet()) process.stderr.write(`feedback: ${summary}; pool version ${live!.version}\n`);
      await writeLine(io.stdout, JSON.stringify({ counted: tally.get('counted') ?? 0, refused: Object.fromEntries([...tally].filter(([k]) => k !== 'counted')), pool_version: live!.version }) + '\n');
      if ([...tally.keys()].some((k) => k !== 'counted' && k !== 'ALREADY_COUNTED')) process.exitCode = 1;
    });

  program
    .command('models')
    .description('list the LLMs in the pool')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--json', 'one JSON object per LLM, with its error vector')
    .option('--pool <url>', POOL_HELP)
    .action(async (o) => {
      const { router, live } = await loadWithPool(o.router, o.pool);
      if (live) {
        if (!o.json) await writeLine(process.stderr, `pool ${live.store.description}, version ${live.version}, model ${live.modelHash.slice(0, 12)}\n`);
        await live.close();
      }
      if (!o.json) {
        await writeLine(process.stderr, operatingPointText(router) + '\n');
        if (router.size > 0) {
          const t1 = router.tradeoffScale();
          await writeLine(
            process.stderr,
            `--tradeoff t maps onto lambda = ${t1.toPrecision(3)} x 10^(-4 (1 - t)) for this pool: t = 0 the lowest predicted error, ` +
              `t = 0.5 lambda ${router.lambdaForTradeoff(0.5).toPrecision(3)}, t = 1 lambda ${t1.toPrecision(3)} (the cheapest LLM wins in every cluster)\n`,
          );
        }
      }
      for (const m of router.models()) {
        const line = o.json
          ? JSON.stringify(m)
          : `${m.name.padEnd(40)} cost/query ${m.costPerQuery.toExponential(3)}  overall error ${m.overallError.toFixed(3)}  outcomes ${String(m.outcomes).padStart(5)}  coverage ${(100 * m.coverage).toFixed(0).padStart(3)} %`;
        await writeLine(io.stdout, line + '\n');
      }
    });

  program
    .command('suggest-labels')
    .description('pick the candidate prompts whose outcomes would most improve routing for a new (or thinly evidenced) LLM; writes them as JSONL, ready to send to it')
    .option('--router <file>', 'router file (default: the built-in router)')
    .requiredOption('--candidates <jsonl>', 'candidate prompts: {"id", "text"} lines ({"id", "embedding"} for a router on your own embeddings), e.g. a sample of your traffic')
    .requiredOption('--budget <n>', 'how many prompts to suggest', intArg('--budget', 1))
    .option('--model <name>', 'the LLM to label for: one in the pool (its outcomes so far count) or a new name')
    .option('--cost <usd>', 'the new LLM\'s cost per query (to favour prompts where it is close to winning)', numArg('--cost'))
    .option('--lambda <l>', 'the routing the labels should improve (default: the router\'s)', numArg('--lambda'))
    .option('--seed <n>', 'random seed', intArg('--seed'), 1)
    .addOption(new Option('--order <order>', 'the order within a cluster: shuffle (seeded), or given (the file\'s order, for candidates already sampled at random)').choices(['shuffle', 'given']).default('shuffle'))
    .option('--output <file>', 'output JSONL, or - for stdout', '-')
    .addOption(new Option('--max-errors <n>', 'stop after this many bad candidate lines (fewer are skipped with a warning; 0 = never stop)').argParser(intArg('--max-errors', 0)).default(10))
    .action(async (o) => {
      const router = await loadRouter(o.router);
      const recs: any[] = [];
      const seen = new Set<string>();
      const good = await readRecords(
        o.candidates,
        (rec, line) => {
          if (rec?.id === undefined) throw new UnirouteError('INVALID_ARGUMENT', `${o.candidates}:${line}: needs an "id"`);
          if (router.takesText ? typeof rec.text !== 'string' || !rec.text.trim() : !Array.isArray(rec.embedding) || rec.embedding.length !== router.dim)
            throw new UnirouteError('INVALID_ARGUMENT', `${o.candidates}:${line}: needs ${router.takesText ? 'a non-empty string "text"' : `an "embedding" of ${router.dim} numbers`}`);
          return rec;
        },
        { maxErrors: o.maxErrors, warn: warnLine },
      );
      for (const rec of good) {
        // the same prompt twice is one candidate
        const key = router.takesText ? rec.text : String(rec.id);
        if (seen.has(key)) continue;
        seen.add(key);
        recs.push(rec);
      }
      if (recs.length === 0) throw new UnirouteError('INVALID_ARGUMENT', `${o.candidates} has no candidate prompt`);
      const cand = router.takesText ? recs.map((r) => r.text as string) : Float32Array.from(recs.flatMap((r) => r.embedding as number[]));
      const picks = await router.suggestLabels(cand, { budget: o.budget, model: o.model, costPerQuery: o.cost, lambda: o.lambda, seed: o.seed, order: o.order });
      const out = o.output === '-' ? io.stdout : await openOutput(o.output);
      for (const p of picks) await writeLine(out, JSON.stringify({ ...recs[p.index], cluster: p.cluster, reason: p.reason }) + '\n');
      if (out !== io.stdout) {
        out.end();
        await once(out, 'finish');
      }
      if (!quiet())
        process.stderr.write(
          `suggested ${picks.length} of ${recs.length} candidates${picks.length < o.budget ? ' (all of them)' : ''}` +
            ` for ${o.model ? `"${o.model}"` : 'a new LLM'}: ${picks.filter((p) => p.reason === 'coverage').length} spread over the traffic, ` +
            `${picks.filter((p) => p.reason === 'value').length} where a label narrows the posterior most\n`,
        );
    });

  program
    .command('route')
    .description('route JSONL prompts ({"id", "text"} per line) to LLMs; writes JSONL decisions in input order, streaming')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--lambda <l>', 'error-per-cost trade-off (0 = lowest predicted error); default: the router\'s', numArg('--lambda'))
    .option('--tradeoff <t>', 'the unit-free knob instead of --lambda: t in [0, 1], 0 = lowest predicted error, 1 = the cheapest LLM (uniroute models prints what it means for this pool)', numArg('--tradeoff'))
    .option('--max-cost <usd>', 'instead of --lambda: the most accurate routing with mean cost per query at most this (lambda calibrated on the first batch, then fixed)', numArg('--max-cost'))
    .option('--min-accuracy <a>', 'instead of --lambda: the cheapest routing with mean predicted accuracy at least this (calibrated likewise)', numArg('--min-accuracy'))
    .option('--max-error <e>', 'a quality floor instead of --lambda: the cheapest LLM whose predicted error is at most e (the lowest predicted error where none is)', numArg('--max-error'))
    .option('--models <list>', 'comma-separated LLMs allowed (default: the whole pool)', listArg)
    .option('--ood-quantile <q>', 'a prompt farther from its nearest centroid than this quantile of the training prompts is out of distribution ("ood": true) (default 0.99)', numArg('--ood-quantile'))
    .option('--ood-fallback <llm>', 'where out-of-distribution prompts go: best-overall (the LLM with the lowest predicted error over the training prompts, default), an LLM\'s name, or route (flag only)')
    .option('--no-ood', 'no out-of-distribution check')
    .option('--input <file>', 'input JSONL, or - for stdin', '-')
    .option('--output <file>', 'output JSONL, or - for stdout', '-')
    .option('--shard <i/n>', 'route only the I-th of N interleaved shards of the input lines (a fleet splits one file)')
    .option('--explain', 'add every candidate LLM\'s predicted error, cost, outcomes in the prompt\'s cluster, evidence flag and 95 % interval')
    .option('--risk <k>', 'route on the predicted error + k posterior sd, so that thinly evidenced LLMs are not trusted blindly (default 0)', numArg('--risk'))
    .addOption(new Option('--evidence <rule>', 'prefer: an LLM with no outcome in the prompt\'s cluster wins only when no allowed LLM has one (default); ignore: compete on predicted error alone').choices(['prefer', 'ignore']))
    .addOption(new Option('--batch-size <n>', 'prompts per native batch').argParser(intArg('--batch-size', 1)).default(4096))
    .addOption(new Option('--max-errors <n>', 'stop after this many bad input lines, with a summary (0 = never stop)').argParser(intArg('--max-errors', 0)).default(10))
    .option('--pool <url>', POOL_HELP)
    .action(async (o) => {
      const targets = [o.lambda, o.tradeoff, o.maxCost, o.minAccuracy, o.maxError].filter((x) => x !== undefined).length;
      if (targets > 1) throw new UnirouteError('INVALID_ARGUMENT', 'give at most one of --lambda, --tradeoff, --max-cost, --min-accuracy and --max-error');
      if (o.tradeoff !== undefined && !(o.tradeoff >= 0 && o.tradeoff <= 1)) throw new UnirouteError('INVALID_ARGUMENT', `--tradeoff must be in [0, 1] (0 = lowest predicted error, 1 = cheapest); got ${o.tradeoff}`);
      if (o.maxError !== undefined && (o.maxError < 0 || o.maxError > 1)) throw new UnirouteError('INVALID_ARGUMENT', '--max-error must be in [0, 1]');
      if (o.minAccuracy !== undefined && o.minAccuracy > 1) throw new UnirouteError('INVALID_ARGUMENT', '--min-accuracy must be in [0, 1]');
      let shard: { i: number; n: number } | undefined;
      if (o.shard !== undefined) {
        const m = /^(\d+)\/(\d+)$/.exec(String(o.shard));
        if (!m || Number(m[2]) < 1 || Number(m[1]) < 1 || Number(m[1]) > Number(m[2])) throw new UnirouteError('INVALID_ARGUMENT', `--shard must be I/N with 1 <= I <= N (got ${JSON.stringify(o.shard)})`);
        shard = { i: Number(m[1]), n: Number(m[2]) };
      }
      const { router, live } = await loadWithPool(o.router, o.pool);
      await live?.close(); // routes on the pool as it is now
      let lambda: number | undefined = o.tradeoff !== undefined ? router.lambdaForTradeoff(o.tradeoff) : o.lambda;
      let mix: { lambda: number; share: number } | undefined; // a calibrated target between two lambdas
      let dispatched = 0; // prompts sent to routing so far (the mix's assignment continues across batches)
      const calibrate = o.maxCost !== undefined || o.minAccuracy !== undefined;
      const out = o.output === '-' ? io.stdout : await openOutput(o.output);
      const progress = new Progress(!quiet() && (o.output !== '-' || !!process.stderr.isTTY));
      let routed = 0;
      const t0 = Date.now();
      const share = new Map<string, number>();
      let costSum = 0;
      let errSum = 0;
      let failed = 0;
      type Item = { line: number; id: unknown; text?: string; embedding?: number[]; error?: { code: string; message: string } };
      const byText = !!router.takesText;
      let batch: Item[] = [];
      // Routing of one batch overlaps the reading and parsing of the next (the engine works off the event loop);
      // decisions are written in input order, and at most two batches are held.
      let writing: Promise<void> = Promise.resolve();
      const flush = async () => {
        const items = batch;
        batch = [];
        const ok = items.filter((b) => !b.error);
        if (ok.length && calibrate && lambda === undefined) {
          if (!byText) throw new UnirouteError('INVALID_ARGUMENT', '--max-cost / --min-accuracy need a router on texts');
          const c = await router.calibrateLambda(ok.map((b) => b.text!), { maxCost: o.maxCost, minAccuracy: o.minAccuracy }, { models: o.models, risk: o.risk, evidence: o.evidence });
          lambda = c.lambda;
          mix = c.mix;
          const target = o.maxCost !== undefined ? `mean cost <= ${o.maxCost}` : `predicted accuracy >= ${o.minAccuracy}`;
          if (!quiet() || !c.feasible)
            process.stderr.write(
              `${c.feasible ? '' : 'warning: the target cannot be met; using the closest routing. '}lambda = ${c.lambda.toPrecision(4)}` +
                (c.mix ? `, and ${(100 * c.mix.share).toFixed(1)} % of prompts at lambda = ${c.mix.lambda.toPrecision(4)} (no single lambda lands within 5 % of the target)` : '') +
                ` for ${target}; reached on the first ${ok.length} prompts: mean cost ${c.meanCost.toPrecision(4)}, predicted accuracy ${c.predictedAccuracy.toFixed(4)}\n`,
            );
        }
        const ood = o.ood === false ? (false as const) : { quantile: o.oodQuantile, fallback: o.oodFallback };
        const policy = { lambda, models: o.models, risk: o.risk, evidence: o.evidence, explain: !!o.explain, maxError: o.maxError, ood, ...(mix ? { mix: { ...mix, offset: dispatched } } : {}) };
        dispatched += ok.length;
        let routing: Promise<RouteBatch | undefined> = Promise.resolve(undefined);
        if (ok.length && byText) routing = router.routeBatch(ok.map((b) => b.text!), policy);
        else if (ok.length) {
          const e = new Float32Array(ok.length * router.dim);
          ok.forEach((b, i) => e.set(b.embedding!, i * router.dim));
          routing = router.routeEmbeddings(e, policy);
        }
        routing.catch(() => undefined); // awaited below, in order; this only keeps an early failure from being unhandled
        const previous = writing;
        writing = (async () => {
          await previous;
          const res = await routing;
          await writeLine(out, formatDecisions(items, res));
          progress.update('routed', routed + failed);
        })();
        writing.catch(() => undefined); // a failure surfaces at the next await of `writing`, not as unhandled
        await previous; // the batch before has been written: at most this one is in flight
      };
      // decision lines without the generic replacer (most of the time of a large batch was JSON.stringify's)
      const modelJson = new Map<string, string>();
      const r5 = (v: number) => String(Number.isInteger(v) ? v : +v.toFixed(5));
      const formatDecisions = (items: Item[], res: RouteBatch | undefined): string => {
        let j = 0;
        let chunk = '';
        const fast = !!res && !o.explain && res.predictedError.length === 0;
        for (const b of items) {
          if (b.error) {
            failed++;
            chunk += JSON.stringify({ id: b.id ?? null, line: b.line, error: b.error }) + '\n';
            continue;
          }
          const simpleId = typeof b.id === 'string' || Number.isInteger(b.id) || b.id === null;
          if (fast && simpleId) {
            const c = res!.choice[j];
            const model = res!.models[c];
            const cost = res!.costs[c];
            const err = res!.chosenError[j];
            let mj = modelJson.get(model);
            if (mj === undefined) modelJson.set(model, (mj = JSON.stringify(model)));
            share.set(model, (share.get(model) ?? 0) + 1);
            costSum += cost;
            errSum += err;
            chunk +=
              `{"id":${JSON.stringify(b.id)},"model":${mj},"cluster":${res!.cluster[j]},"distance":${r5(res!.distance[j])},` +
              `"predicted_error":${r5(err)},"cost":${JSON.stringify(cost)},"ood":${res!.ood[j] === 1}}\n`;
          } else {
            const d = explainRow(res!, j);
            share.set(d.model, (share.get(d.model) ?? 0) + 1);
            costSum += d.cost;
            errSum += d.predictedError;
            chunk += decisionJson(d, !!o.explain, b.id) + '\n';
          }
          j++;
          routed++;
        }
        return chunk;
      };
      let seq = 0;
      let bad = 0;
      let stopped = false;
      let firstError: string | undefined;
      read: for await (const lines of jsonLineBatches(o.input, 'INVALID_ARGUMENT', { tolerant: true })) {
        for (const { rec, line, malformed, why } of lines) {
          // --shard I/N: the I-th of N interleaved shards of the (non-blank) lines, so that machines can split a file
          if (shard && seq++ % shard.n !== shard.i - 1) continue;
          const item: Item = { line, id: null };
          if (malformed) item.error = { code: 'INVALID_ARGUMENT', message: `line ${line}: ${why ?? 'malformed JSON'}` };
          else {
            item.id = rec?.id ?? null;
            if (!byText) {
              const e = rec?.embedding;
              if (!Array.isArray(e)) item.error = { code: 'INVALID_ARGUMENT', message: `line ${line}: this router needs an "embedding" array` };
              else if (e.length !== router.dim) item.error = { code: 'DIMENSION_MISMATCH', message: `line ${line}: "embedding" has ${e.length} values; the router expects ${router.dim}` };
              else if (!e.every((v: unknown) => typeof v === 'number' && Number.isFinite(v))) item.error = { code: 'NON_FINITE', message: `line ${line}: "embedding" has a value that is not a finite number` };
              else item.embedding = e;
            } else if (typeof rec?.text !== 'string') item.error = { code: 'INVALID_ARGUMENT', message: `line ${line}: "text" must be a string` };
            else if (!/\S/.test(rec.text)) item.error = { code: 'EMPTY_TEXT', message: `line ${line}: "text" is empty` };
            else item.text = rec.text;
          }
          if (item.error && firstError === undefined) firstError = item.error.message;
          batch.push(item);
          if (item.error && ++bad >= o.maxErrors && o.maxErrors > 0) {
            // the wrong file, most likely: stop instead of writing one error record per line of it
            stopped = true;
            break read;
          }
          if (batch.length >= o.batchSize) await flush();
        }
      }
      if (batch.length) await flush();
      await writing;
      if (stopped) {
        const first = firstError ?? '';
        process.stderr.write(
          `uniroute: INVALID_ARGUMENT: stopped after ${bad} bad input lines (--max-errors ${o.maxErrors}); the first: ${first}. ` +
            `Is ${o.input === '-' ? 'standard input' : o.input} JSONL of {"id", "text"} lines? (--max-errors 0 never stops)\n`,
        );
        process.exitCode = 2;
      }
      if (out !== io.stdout) {
        out.end();
        await once(out, 'finish');
      }
      const secs = (Date.now() - t0) / 1000;
      const top = [...share].sort((a, b) => b[1] - a[1]);
      const shares = top
        .slice(0, 4)
        .map(([m, c]) => `${m} ${((100 * c) / Math.max(1, routed)).toFixed(1)} %`)
        .join(', ');
      progress.done(
        quiet()
          ? undefined
          : `routed ${routed} prompts in ${secs.toFixed(1)} s (${Math.round(routed / Math.max(secs, 1e-3)).toLocaleString('en-US')}/s, ` +
              `peak memory ${Math.round(process.resourceUsage().maxRSS / 1024)} MB)` +
              `${failed ? `, ${failed} lines failed` : ''}` +
              (routed
                ? `; mean cost ${(costSum / routed).toExponential(3)}, mean predicted error ${(errSum / routed).toFixed(3)}; ` +
                  `${shares}${top.length > 4 ? `, ${top.length - 4} more LLMs` : ''}`
                : ''),
      );
      if (routed + failed === 0) process.stderr.write(`uniroute: ${o.input === '-' ? 'standard input' : o.input} has no prompt line: nothing routed\n`);
      if (failed && !stopped) {
        process.stderr.write(`uniroute: ${failed} input line(s) could not be routed (see their "error" records)\n`);
        process.exitCode = 2;
      }
    });

  program
    .command('eval')
    .description("the paper's unseen-LLM protocol: UniRoute (K-means, learned map) against baselines, deferral curves and their area")
    .requiredOption('--data <dir>', 'dataset folder')
    .requiredOption('--out <dir>', 'report folder (report.json, report.md, deferral.svg)')
    .option('--seeds <n>', 'random seeds (trials)', intArg('--seeds', 1), 5)
    .option('--first-seed <n>', 'first seed', intArg('--first-seed'), 1)
    .option('--unseen-fraction <f>', 'share of the LLMs with complete outcomes held out as unseen', numArg('--unseen-fraction'), 0.5)
    .option('--val-prompts <list>', 'validation prompts per unseen LLM; a list (25,50,100,200,400) sweeps label efficiency', (v: string) => v.split(',').map((x) => intArg('--val-prompts', 1)(x.trim())))
    .option('--test-fraction <f>', 'share of prompts held out for testing', numArg('--test-fraction'), 0.3)
    .option('--methods <list>', 'methods to run (default: all)', listArg)
    .option('--exclude-models <list>', 'comma-separated LLMs to leave out of the protocol', listArg)
    .option('--dim <d>', 'embedding dimension', intArg('--dim', 1), 256)
    .option('--price-per-billion-params <usd>', 'proxy price for LLMs with no list price', numArg('--price-per-billion-params'))
    .option('--title <text>', 'report title')
    .option('--linear-cost', 'a linear cost axis in the plots (default: log scale)')
    .option('--log-cost', 'a log-scale cost axis (the default; kept for scripts)')
    .option('--embedder <spec>', 'embed every prompt once through an OpenAI-compatible endpoint: openai:MODEL@BASE_URL')
    .option('--embeddings <jsonl>', 'or your own prompt embeddings: {"id", "embedding"} lines, one per prompt')
    .option('--embedder-key-env <name>', 'environment variable holding the endpoint\'s API key', 'OPENAI_API_KEY')
    .action(async (o) => {
      // option values are checked before any work starts
      for (const [flag, v] of [['--unseen-fraction', o.unseenFraction], ['--test-fraction', o.testFraction]] as const)
        if (!(v > 0 && v < 1)) throw new UnirouteError('INVALID_ARGUMENT', `${flag} must be between 0 and 1 (exclusive); got ${v}`);
      const { evaluate, ALL_METHODS, EXTRA_METHODS } = await import('../eval/protocol.js');
      const { writeReport, markdownTable, operatingPointLine } = await import('../eval/report.js');
      const known = new Set<string>([...ALL_METHODS, ...EXTRA_METHODS]);
      for (const m of o.methods ?? []) if (!known.has(m)) throw new UnirouteError('INVALID_ARGUMENT', `unknown method "${m}" (known: ${[...known].join(', ')})`);
      const progress = new Progress(!quiet());
      progress.update('reading dataset', 0);
      const ds = await loadDataset(o.data);
      const t0 = Date.now();
      const report = await evaluate(ds, {
        seeds: o.seeds,
        firstSeed: o.firstSeed,
        unseenFraction: o.unseenFraction,
        valPrompts: o.valPrompts,
        testFraction: o.testFraction,
        methods: o.methods,
        excludeModels: o.excludeModels,
        dim: o.dim,
        pricePerBillionParams: o.pricePerBillionParams,
        remoteEmbedder: o.embedder ? remoteFrom(o.embedder, o.embedderKeyEnv, false) : undefined,
        promptEmbeddings: o.embeddings ? await promptEmbeddingsOf(ds, o.embeddings) : undefined,
        onProgress: (s, d, t) => progress.update(s, d, t),
      });
      (report.settings as any).seconds = (Date.now() - t0) / 1000;
      // the data set's name, not its path, as the title
      const files = await writeReport(o.out, report, o.title ?? basename(resolvePath(o.data)), !o.linearCost);
      progress.done(`${o.seeds} seeds in ${((Date.now() - t0) / 1000).toFixed(1)} s -> ${files.join(', ')}`);
      await writeLine(io.stdout, markdownTable(report) + '\n' + (report.operating_point ? operatingPointLine(report) + '\n' : ''));
    });

  program
    .command('serve')
    .description('HTTP server: /v1/route, /v1/models (admin: UNIROUTE_ADMIN_TOKEN), /v1/chat/completions (OpenAI-compatible proxy), /healthz, /readyz, /metrics')
    .option('--router <file>', 'router file (loaded, and where admin pool changes are saved); default: the built-in router, read-only')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port', intArg('--port'), 8080)
    .option('--pool <url>', `${POOL_HELP}; admin changes go there, other processes' changes arrive within 1 s`)
    .option('--config <file>', 'gateway config, YAML or JSON: upstreams, presets ("model": "uniroute/<name>"), retry, breaker, timeouts, limits (see README); SIGHUP re-reads it')
    .option('--upstreams <file>', 'the older upstreams-only file {"upstreams": {...}}: read as a config file')
    .option('--batch-window-ms <ms>', 'micro-batching window', numArg('--batch-window-ms'), 1)
    .option('--max-prompt-chars <n>', 'longest prompt accepted', intArg('--max-prompt-chars', 1), 100_000)
    .option('--max-prompts <n>', 'most prompts in one /v1/route request', intArg('--max-prompts', 1), 1024)
    .option('--body-limit <bytes>', 'largest request body', intArg('--body-limit', 1024), 4 * 1024 * 1024)
    .option('--connect-timeout-ms <ms>', 'default upstream connect timeout', intArg('--connect-timeout-ms', 1))
    .option('--headers-timeout-ms <ms>', 'default time to the upstream response headers', intArg('--headers-timeout-ms', 1))
    .option('--idle-timeout-ms <ms>', 'default longest gap between two chunks of an upstream response (never a cap on a whole stream)', intArg('--idle-timeout-ms', 1))
    .option('--upstream-timeout-ms <ms>', 'older name of --headers-timeout-ms', intArg('--upstream-timeout-ms', 1))
    .option('--log', 'log every request (JSON lines on stdout), with one decision line per chat completion')
    .option('--feedback-half-life <hours>', 'with --pool: decay an LLM\'s older evidence with this half-life as feedback arrives, so Ψ follows drift', numArg('--feedback-half-life'))
    .action(async (o) => {
      const { buildApp } = await import('../server/app.js');
      const { loadConfig, parseConfig, checkAgainstPool } = await import('../server/config.js');
      if (o.config && o.upstreams) throw new UnirouteError('INVALID_ARGUMENT', 'give --config or --upstreams, not both (a config file has an "upstreams" key)');
      const { router, live } = await loadWithPool(o.router, o.pool, 'serve');
      const timeouts = {
        ...(o.connectTimeoutMs !== undefined ? { connectMs: o.connectTimeoutMs } : {}),
        ...((o.headersTimeoutMs ?? o.upstreamTimeoutMs) !== undefined ? { headersMs: o.headersTimeoutMs ?? o.upstreamTimeoutMs } : {}),
        ...(o.idleTimeoutMs !== undefined ? { idleMs: o.idleTimeoutMs } : {}),
      };
      const configFile: string | undefined = o.config ?? o.upstreams;
      const read = () => (configFile ? loadConfig(configFile, timeouts) : parseConfig({}, 'defaults', timeouts));
      const check = (cfg: ReturnType<typeof read>) => {
        const { errors, warnings } = checkAgainstPool(cfg, router.snapshot().names);
        for (const w of warnings) if (!quiet()) process.stderr.write(`warning: ${cfg.source}: ${w}\n`);
        if (errors.length) throw new UnirouteError('INVALID_ARGUMENT', `${cfg.source}:\n  ${errors.join('\n  ')}`);
        return cfg;
      };
      const config = check(read());
      const tokenEnv = config.tokens.adminEnv ?? 'UNIROUTE_ADMIN_TOKEN';
      const adminToken = process.env[tokenEnv] || undefined;
      const app = await buildApp({
        router,
        routerPath: o.router,
        adminToken,
        config,
        pool: live,
        ...feedbackOptions(o.feedbackHalfLife),
        batchWindowMs: o.batchWindowMs,
        maxPromptChars: config.limits.promptChars ?? o.maxPromptChars,
        maxPromptsPerRequest: config.limits.promptsPerRequest ?? o.maxPrompts,
        bodyLimitBytes: config.limits.bodyBytes ?? o.bodyLimit,
        logger: !!o.log,
      });
      const address = await app.listen({ host: o.host, port: o.port });
      const notes = [
        `${router.size} LLMs, ${router.k} clusters`,
        adminToken ? (o.router || live ? 'admin on' : 'admin read-only (no --pool or --router)') : `admin off (set ${tokenEnv})`,
        ...(live ? [`pool ${live.store.description} v${live.version}`] : []),
        config.upstreams.size ? `${config.upstreams.size} upstreams, ${config.presets.size} presets` : 'no upstreams',
      ];
      if (!quiet()) process.stderr.write(`uniroute serving on ${address} (${notes.join('; ')})\n`);
      const onHup = () => {
        if (!configFile) return;
        let next: ReturnType<typeof read>;
        try {
          next = check(read());
        } catch (e) {
          process.stderr.write(`SIGHUP: ${configFile} not reloaded, the running config stays: ${(e as Error).message}\n`);
          return;
        }
        (app as unknown as { reloadGateway: (c: typeof next) => Promise<void> }).reloadGateway(next).then(
          () => !quiet() && process.stderr.write(`SIGHUP: reloaded ${configFile} (${next.upstreams.size} upstreams, ${next.presets.size} presets)\n`),
          (e) => process.stderr.write(`SIGHUP: ${configFile} not reloaded, the running config stays: ${(e as Error).message}\n`),
        );
      };
      process.on('SIGHUP', onHup);
      await new Promise<void>((resolve) => {
        const stop = (sig: string) => {
          if (!quiet()) process.stderr.write(`${sig}: finishing in-flight requests\n`);
          app.close().then(() => resolve(), () => resolve());
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      process.off('SIGHUP', onHup);
    });

  program
    .command('info')
    .description('show the engine (backend, CUDA, threads) and the router')
    .option('--router <file>', 'router file (default: the built-in router)')
    .option('--json', 'as JSON')
    .action(async (o) => {
      const b = backendInfo();
      const info: Record<string, unknown> = { backend: b.backend, cuda: b.cuda, threads: getThreads(), node: process.version };
      let summary: string[] = ['router     none (the built-in router is missing)'];
      try {
        const router = await loadRouter(o.router);
        info.router = {
          path: o.router ?? defaultRouterPath(),
          embedder: router.embedderSpec,
          clusters: router.k,
          clusterMap: router.map ? 'learned-map' : 'kmeans',
          models: router.size,
          priorStrength: router.priorStrength,
          defaultLambda: router.defaultLambda,
          evidenceCells: router.cells?.count ?? null,
          difficulty: router.prior?.difficulty ? { slope: router.prior.difficulty.slope } : null,
          fit: router.info,
        };
        summary = [
          `router     ${o.router ?? defaultRouterPath()}`,
          `embedder   ${router.embedderSpec.kind}, ${router.dim} dimensions${'model' in router.embedderSpec ? ` (${router.embedderSpec.model} at ${router.embedderSpec.baseUrl})` : ''}`,
          `clusters   ${router.k} (${router.map ? 'learned map' : 'k-means'}), ${router.cells ? `${router.cells.count} evidence cells` : 'evidence by cluster'}, prior strength ${router.priorStrength}` +
            (router.prior?.difficulty ? `, difficulty slope ${router.prior.difficulty.slope.toFixed(2)}` : ''),
          `pool       ${router.size} LLMs (uniroute models lists them)`,
          `operating  ${operatingPointText(router)}`,
        ];
      } catch (e) {
        if (o.router) throw e;
        info.router = null; // no built-in router: the engine report still stands
      }
      if (o.json) {
        await writeLine(io.stdout, JSON.stringify(info) + '\n');
        return;
      }
      const cuda = b.cuda.available ? `${b.cuda.device?.name} (usable)` : b.cuda.compiled ? `compiled, not usable: ${b.cuda.reason}` : 'not compiled';
      await writeLine(io.stdout, [`engine     ${b.backend}, ${getThreads()} threads, Node ${process.version}`, `cuda       ${cuda}`, ...summary, '(--json for everything)'].join('\n') + '\n');
    });

  return program;
}

/** Runs the CLI; resolves to the exit status. Errors print one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // every command, not only the root: a subcommand's parse error must come back here (exit status 2), not exit 1
  for (const c of [program, ...program.commands]) {
    c.exitOverride();
    c.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  }
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // a bad value found by an action (commander printed those it found while parsing)
    if (err instanceof InvalidArgumentError && !(err as { printed?: boolean }).printed) {
      process.stderr.write(`uniroute: INVALID_ARGUMENT: ${err.message}\n`);
      return 2;
    }
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UnirouteError) {
      process.stderr.write(`uniroute: ${err.code}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`uniroute: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}
