/**
 * The README and every page of docs/, run as a reader would run them. Each page's blocks run in order as one bash
 * script, in a folder holding a small generated dataset (`my-data/`, whose LLMs are named like real ones), a router
 * fitted on it (`my.uniroute`) and the input files the pages name:
 * - `sh` blocks run with `set -eo pipefail`; `uniroute serve` starts in the background on a free port and the
 *   script goes on once it answers (`localhost:8080` and `8081` in the text point at it), and curl fails on an HTTP
 *   error unless the block expects one; `localhost:9000` is a stand-in OpenAI/Anthropic upstream and embeddings
 *   server, `localhost:6379` a real redis-server;
 * - `ts` blocks are type-checked against the package's types and run with `import ... from 'uniroute'`;
 * - `yaml`/`json` blocks are written to the file their `<!-- docs-test: file NAME -->` comment names;
 * - a block that cannot run says why: `<!-- docs-test: skip (reason) -->`.
 * Beside them: the CLI page lists every command and option the CLI has (and no other), every `uniroute` and
 * `npm run` command in a page exists, links between pages resolve, docs/results.md and the README's table are what
 * the committed report.json files give, the counts in their titles are the data's, and `uniroute eval` on the real
 * zeroeval data reproduces the committed report's first seed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mulberry32 } from '../src/engine/reference.js';
import { HAS_SHARED_DATA, SHARED_DATA, SKIP_REASON, startRedis, synthText, NODE_CLI_FLAGS } from './helpers.js';
import type { LocalRedis } from '../bench/redis-server.js';

const ROOT = resolve(__dirname, '..');
const BIN = join(ROOT, 'bin', 'uniroute.js');
const PAGES = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (page: string) => readFileSync(join(ROOT, page), 'utf8');
/** The tools the pages' shell examples use, as a reader's machine has them; CI installs them (.ci/run). */
const MISSING_TOOLS = ['bash', 'curl', 'jq'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
if (MISSING_TOOLS.length && process.env.CI === 'true') throw new Error(`${MISSING_TOOLS.join(', ')} missing: .ci/run installs them`);
const TOOLS_REASON = `the pages' shell examples need ${MISSING_TOOLS.join(' and ')} (apt-get install ${MISSING_TOOLS.join(' ')}): skipped`;

// ---- the blocks of a page ------------------------------------------------------------------------------------------
interface Block {
  lang: string;
  code: string;
  line: number;
  directive?: string;
}
/** Fenced blocks (indented ones in lists too), each with the `<!-- docs-test: … -->` comment just before it. */
function blocksOf(md: string): Block[] {
  const lines = md.split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) body.push(lines[j].slice(Math.min(indent, lines[j].length - lines[j].trimStart().length)));
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const d = k >= 0 ? /^\s*<!-- docs-test: (.*) -->\s*$/.exec(lines[k]) : null;
    out.push({ lang: open[2], code: body.join('\n'), line: i + 1, directive: d?.[1] });
    i = j;
  }
  return out;
}
const RUN = new Set(['sh', 'bash', 'shell']);
const CODE = new Set(['ts', 'typescript', 'js', 'javascript']);
const FILES = new Set(['yaml', 'yml', 'json']);

// ---- the folder the pages run in ---------------------------------------------------------------------------------
/** LLMs named like real ones: per-topic accuracy and a measured cost per query. */
const DOC_LLMS: Record<string, { acc: Record<string, number>; cost: number; price?: [number, number]; params?: number }> = {
  'gpt-4o': { acc: { math: 0.92, code: 0.9, history: 0.9 }, cost: 0.005, price: [2.5, 10] },
  'claude-sonnet': { acc: { math: 0.88, code: 0.94, history: 0.92 }, cost: 0.006, price: [3, 15] },
  'llama-3-70b': { acc: { math: 0.8, code: 0.7, history: 0.78 }, cost: 0.0009, params: 70.6 },
  'gpt-4o-mini': { acc: { math: 0.74, code: 0.66, history: 0.72 }, cost: 0.0003, price: [0.15, 0.6] },
  'mistral-7b': { acc: { math: 0.45, code: 0.4, history: 0.6 }, cost: 0.0001, params: 7.2 },
};
const TOPICS = ['math', 'code', 'history'];
const EMB_DIM = 32;

function writeDocsFolder(dir: string): void {
  const rand = mulberry32(2025);
  const topicDirs = TOPICS.map(() => Array.from({ length: EMB_DIM }, () => rand() * 2 - 1));
  const vec = (t: number) => {
    const v = topicDirs[t].map((x) => x + (rand() - 0.5) * 0.6);
    const n = Math.hypot(...v);
    return v.map((x) => +(x / n).toFixed(5));
  };
  mkdirSync(join(dir, 'my-data'));
  const prompts: string[] = [];
  const labels = ['prompt_id,model,correct,cost_usd'];
  const emb: string[] = [];
  for (let i = 0; i < 450; i++) {
    const t = i % 3;
    prompts.push(JSON.stringify({ id: `p${i}`, benchmark: TOPICS[t], text: synthText(TOPICS[t], rand) }));
    emb.push(JSON.stringify({ id: `p${i}`, embedding: vec(t) }));
    for (const [m, s] of Object.entries(DOC_LLMS)) labels.push(`p${i},${m},${rand() < s.acc[TOPICS[t]] ? 1 : 0},${s.cost}`);
  }
  writeFileSync(join(dir, 'my-data', 'prompts.jsonl'), prompts.join('\n') + '\n');
  writeFileSync(join(dir, 'my-data', 'labels.csv'), labels.join('\n') + '\n');
  writeFileSync(
    join(dir, 'my-data', 'models.csv'),
    'model,price_in_usd_per_1m_tokens,price_out_usd_per_1m_tokens,params_b\n' +
      Object.entries(DOC_LLMS).map(([m, s]) => `${m},${s.price?.[0] ?? ''},${s.price?.[1] ?? ''},${s.params ?? ''}`).join('\n') + '\n',
  );
  writeFileSync(join(dir, 'my-embeddings.jsonl'), emb.join('\n') + '\n');
  writeFileSync(join(dir, 'embedded-prompts.jsonl'), Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `e${i}`, embedding: vec(i % 3) })).join('\n') + '\n');
  const texts = (n: number, seed: number) => {
    const r = mulberry32(seed);
    return Array.from({ length: n }, (_, i) => synthText(TOPICS[i % 3], r));
  };
  writeFileSync(join(dir, 'prompts.jsonl'), texts(60, 11).map((text, i) => JSON.stringify({ id: i, text })).join('\n') + '\n');
  writeFileSync(join(dir, 'candidates.jsonl'), texts(300, 12).map((text, i) => JSON.stringify({ id: `c${i}`, text })).join('\n') + '\n');
  writeFileSync(join(dir, 'new-llm.jsonl'), texts(200, 13).map((text, i) => JSON.stringify({ text, correct: i % 5 === 0 ? 0 : 1 })).join('\n') + '\n');
}

/** A stand-in upstream: OpenAI chat completions (JSON or SSE), Anthropic messages, OpenAI embeddings. */
function standIn(): Server {
  return createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const b = body ? JSON.parse(body) : {};
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/embeddings') {
        const inputs: string[] = Array.isArray(b.input) ? b.input : [b.input];
        const data = inputs.map((text, index) => {
          const v = new Array(16).fill(0);
          for (const w of String(text).toLowerCase().split(/\W+/)) if (w) v[[...w].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 16, 7)] += 1;
          const n = Math.hypot(...v) || 1;
          return { object: 'embedding', index, embedding: v.map((x) => x / n) };
        });
        return res.end(JSON.stringify({ object: 'list', model: b.model, data, usage: { prompt_tokens: 1, total_tokens: 1 } }));
      }
      if (req.url === '/v1/messages')
        return res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: b.model, content: [{ type: 'text', text: `Hello from ${b.model}` }], stop_reason: 'end_turn', usage: { input_tokens: 12, output_tokens: 5 } }));
      if (req.url === '/v1/chat/completions') {
        const text = `Hello from ${b.model}`;
        if (b.stream) {
          res.setHeader('content-type', 'text/event-stream');
          res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: b.model, choices: [{ index: 0, delta: { role: 'assistant', content: text }, finish_reason: null }] })}\n\n`);
          res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: b.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
          if (b.stream_options?.include_usage) res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: b.model, choices: [], usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 } })}\n\n`);
          return res.end('data: [DONE]\n\n');
        }
        return res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: b.model, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 } }));
      }
      res.statusCode = 404;
      res.end(JSON.stringify({ error: { message: `no ${req.url} here` } }));
    });
  });
}

const freePort = async () => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
};

/** What every page's script starts with: strict, `uniroute` the clone's CLI, serve in the background, curl failing on errors. */
const PRELUDE = `set -eo pipefail
__servers=()
declare -A __port_pid
uniroute() {
  if [ "\${1:-}" = serve ]; then
    local port=8080 a prev=
    for a in "$@"; do [ "$prev" = --port ] && port=$a; prev=$a; done
    # a server already on that port (an earlier example's) is stopped first, as a reader would
    if [ -n "\${__port_pid[$port]:-}" ]; then kill "\${__port_pid[$port]}" 2>/dev/null || true; wait "\${__port_pid[$port]}" 2>/dev/null || true; fi
    "$UNIROUTE_BIN" "$@" >>"serve-$port.log" 2>&1 &
    local pid=$!
    __servers+=("$pid"); __port_pid[$port]=$pid
    for _ in $(seq 1 600); do
      if command curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; then return 0; fi
      if ! kill -0 "$pid" 2>/dev/null; then echo "uniroute serve exited:" >&2; cat "serve-$port.log" >&2; return 1; fi
      sleep 0.1
    done
    echo "uniroute serve did not answer on $port" >&2; return 1
  fi
  "$UNIROUTE_BIN" "$@"   # through its shebang, as npx runs it
}
npx() { if [ "\${1:-}" = uniroute ]; then shift; uniroute "$@"; else command npx "$@"; fi; }
curl() { if [ -n "\${__http_errors:-}" ]; then command curl -sS "$@"; else command curl -sS --fail-with-body "$@"; fi; }
trap 'for p in "\${__servers[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
`;

interface Env {
  base: string;
  standInPort: number;
  redis: LocalRedis | null;
}
let env: Env;
let server: Server;

/** The page as one script, and what could not run here (a block needing Redis where there is none). */
async function scriptOf(page: string, blocks: Block[], dir: string): Promise<{ script: string; skipped: string[]; jsBlocks: Array<{ name: string; code: string }> }> {
  const ports: Record<string, number> = { '8080': await freePort(), '8081': await freePort(), '9000': env.standInPort, '6379': env.redis?.port ?? 6379 };
  const sub = (s: string) => s.replace(/\b(8080|8081|9000|6379)\b/g, (p) => String(ports[p]));
  const parts: string[] = [PRELUDE];
  const skipped: string[] = [];
  const jsBlocks: Array<{ name: string; code: string }> = [];
  const ts = await import('typescript');
  for (const b of blocks) {
    const d = b.directive ?? '';
    // the README's first two commands: `npm install` and `npm test` are what CI runs (.ci/run: npm ci, npm test);
    // the route that follows the install runs here
    if (page === 'README.md' && b === blocks[0]) {
      parts.push(`echo "::: ${page}:${b.line}" >&2`, b.code.split('\n')[0].replace(/^npm install && /, ''));
      continue;
    }
    if (d.startsWith('skip')) continue;
    const where = `${page}:${b.line}`;
    if (FILES.has(b.lang) && d.startsWith('file ')) {
      parts.push(`cat > ${d.slice(5).trim()} <<'__DOCS_EOF__'\n${sub(b.code)}\n__DOCS_EOF__`);
      continue;
    }
    if (d === 'needs redis' && !env.redis) {
      skipped.push(`${where} (no redis-server here)`);
      continue;
    }
    if (CODE.has(b.lang)) {
      const name = `__block_${b.line}.mjs`;
      const js = ts.transpileModule(sub(b.code), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
      jsBlocks.push({ name, code: js });
      parts.push(`echo "::: ${where}" >&2\nnode ${name}`);
      continue;
    }
    if (!RUN.has(b.lang)) continue;
    const body = sub(b.code);
    const wrapped = d === 'in repo' ? `(cd "$UNIROUTE_ROOT" && {\n${body}\n})` : body;
    parts.push(`echo "::: ${where}" >&2`, d === 'http errors expected' ? `__http_errors=1\n${wrapped}\nunset __http_errors` : wrapped);
  }
  void dir;
  return { script: parts.join('\n'), skipped, jsBlocks };
}

const PAGE_LIMIT_MS = 240_000;
const TEMP_DIRS: string[] = [];
/** Runs a page in a fresh copy of the folder; returns the folder and the run. */
async function runPage(page: string) {
  const dir = mkdtempSync(join(tmpdir(), 'uniroute-docs-'));
  TEMP_DIRS.push(dir);
  cpSync(env.base, dir, { recursive: true });
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'uniroute'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'docs-example', private: true, type: 'module' }));
  const { script, skipped, jsBlocks } = await scriptOf(page, blocksOf(read(page)), dir);
  for (const j of jsBlocks) writeFileSync(join(dir, j.name), j.code);
  writeFileSync(join(dir, 'page.sh'), script);
  // asynchronously: the stand-in upstream answers from this process's event loop
  const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((ok) => {
    // in its own process group, so that a page that overruns is stopped whole (its servers and pipes too) and
    // fails naming the block it was in, instead of the test timing out
    const child = spawn('bash', ['page.sh'], { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UNIROUTE_BIN: BIN, UNIROUTE_ROOT: ROOT, FORCE_COLOR: '0' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n(stopped after ${PAGE_LIMIT_MS / 1000} s)\n`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, PAGE_LIMIT_MS);
    child.on('close', (status) => {
      clearTimeout(timer);
      ok({ status, stdout, stderr });
    });
  });
  return { dir, r, skipped };
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'index.js'))) throw new Error('run `npm run build` first');
  const base = mkdtempSync(join(tmpdir(), 'uniroute-docs-base-'));
  TEMP_DIRS.push(base);
  writeDocsFolder(base);
  const fit = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'fit', '--data', join(base, 'my-data'), '--out', join(base, 'my.uniroute'), '--quiet'], { encoding: 'utf8' });
  if (fit.status !== 0) throw new Error(fit.stderr);
  server = standIn();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  env = { base, standInPort: (server.address() as { port: number }).port, redis: await startRedis() };
}, 300_000);

afterAll(async () => {
  server?.close();
  for (const d of TEMP_DIRS) rmSync(d, { recursive: true, force: true });
  await env?.redis?.stop();
});

describe('every page runs as written', () => {
  it('every block either runs, is written to a file, or says why it cannot run here', () => {
    const problems: string[] = [];
    for (const page of PAGES)
      for (const b of blocksOf(read(page))) {
        const d = b.directive;
        const where = `${page}:${b.line}`;
        if (d !== undefined && !/^(skip \(.+\)|file [\w.-]+|in repo|needs redis|http errors expected)$/.test(d)) problems.push(`${where}: unknown directive "${d}"`);
        if (FILES.has(b.lang) && !(d?.startsWith('file ') || d?.startsWith('skip'))) problems.push(`${where}: a ${b.lang} block needs a file or skip comment`);
        if (!b.lang) problems.push(`${where}: a block without a language (sh, ts, yaml, json, text)`);
      }
    expect(problems).toEqual([]);
    // and every page has something that runs (the results page: its tests below)
    for (const page of PAGES.filter((p) => p !== 'docs/results.md' && p !== 'docs/how-it-works.md'))
      expect(blocksOf(read(page)).some((b) => (RUN.has(b.lang) || CODE.has(b.lang)) && !b.directive?.startsWith('skip')), `${page} has no example that runs`).toBe(true);
  });

  for (const page of PAGES.filter((p) => blocksOf(read(p)).some((b) => (RUN.has(b.lang) || CODE.has(b.lang)) && !b.directive?.startsWith('skip'))))
    it.skipIf(MISSING_TOOLS.length > 0)(`${page}${MISSING_TOOLS.length ? ` (${TOOLS_REASON})` : ''}`, async () => {
      const { dir, r, skipped } = await runPage(page);
      if (skipped.length) console.log(`${page}: not run here: ${skipped.join(', ')}`);
      const last = (r.stderr.match(/::: (\S+)/g) ?? []).pop();
      expect(r.status, `${page} failed in the block at ${last?.slice(4)}:\n--- stdout (end)\n${r.stdout.slice(-3000)}\n--- stderr (end)\n${r.stderr.slice(-3000)}`).toBe(0);
      // what a reader would check by eye, for the pages where a wrong result would still exit 0
      if (page === 'README.md') {
        const decisions = readFileSync(join(dir, 'decisions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
        expect(decisions).toHaveLength(60);
        expect(decisions.reduce((a, d) => a + d.cost, 0) / decisions.length).toBeLessThanOrEqual(0.001 + 1e-12);
        expect(r.stdout).toMatch(/"decisions":\[\{"model":"/);
      }
      if (page === 'docs/library.md') expect(r.stdout).toMatch(/^K = \d+, 3 LLMs\n\{"id":"q0","model":"[^"]+",.*\n.*\nUNKNOWN_MODEL\n$/);
      if (page === 'docs/gateway.md') {
        expect(r.stdout).toMatch(/Hello from (gpt-4o|claude-sonnet|llama-3-70b|gpt-4o-mini|mistral-7b)/);
        expect(r.stdout).toMatch(/^(llama-3-70b|mistral-7b)$/m); // the inhouse preset
        expect(r.stdout).toMatch(/"type":"message"/); // Anthropic in, OpenAI upstream
        expect(r.stdout).toMatch(/uniroute_spend_usd_total\{model="[^"]+",key="-"\} [0-9.e-]+/);
        expect(r.stdout).toMatch(/^uniroute\/careful$/m); // the complete config's presets
      }
      if (page === 'docs/cli.md') expect(r.stdout).toMatch(/^60$/m); // the two shards are the whole file
      if (page === 'docs/server.md') expect(readFileSync(join(dir, 'bad.json'), 'utf8')).toMatch(/unknown field \\"lamda\\" \(did you mean \\"lambda\\"\?\)/);
    }, 600_000);
});

describe('the code examples type-check against the package', () => {
  it('every ts block of the README and docs/, compiled by tsc (strict) with `uniroute` resolved to this package and its types', () => {
    const dir = mkdtempSync(join(tmpdir(), 'uniroute-docs-tsc-'));
    TEMP_DIRS.push(dir);
    mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
    symlinkSync(ROOT, join(dir, 'node_modules', 'uniroute'), 'dir');
    symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'docs-tsc', private: true, type: 'module' }));
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }, include: ['*.ts'] }),
    );
    let n = 0;
    for (const page of PAGES)
      for (const b of blocksOf(read(page)).filter((x) => x.lang === 'ts' || x.lang === 'typescript'))
        writeFileSync(join(dir, `${page.replace(/\W/g, '_')}_${b.line}.ts`), `${b.code}\nexport {};\n`), n++;
    expect(n).toBeGreaterThan(0);
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8', timeout: 300_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 300_000);
});

describe('the reference agrees with the program', () => {
  const helps = new Map<string, string>();
  const help = (args: string[]) => {
    const key = args.join(' ');
    if (!helps.has(key)) helps.set(key, spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, ...args, '--help'], { encoding: 'utf8' }).stdout);
    return helps.get(key)!;
  };
  /** The commands, a command with subcommands (`batch`) as each of them: "batch submit", "batch status", … */
  const commands = (): string[] =>
    namesIn(help([]))
      .filter((c) => c !== 'help')
      .flatMap((c) => {
        const sub = help([c]);
        return /^Commands:/m.test(sub) ? namesIn(sub).filter((x) => x !== 'help').map((x) => `${c} ${x}`) : [c];
      });
  /** The command names of a help text's "Commands:" section. */
  const namesIn = (text: string) => [...(text.split(/^Commands:$/m)[1] ?? '').matchAll(/^ {2}([a-z][a-z-]*)(?=\s)/gm)].map((m) => m[1]);
  const optionsOf = (cmd: string) => [...help(cmd.split(' ')).matchAll(/^ {2}(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1]).filter((o) => o !== '--help');
  const SUBS = new Set(['batch']);

  it('docs/cli.md lists every command with every option it has, and no option it lacks', () => {
    const synopsis = blocksOf(read('docs/cli.md')).find((b) => b.lang === 'text')!.code;
    const byCommand = new Map<string, string>();
    let cur = '';
    for (const l of synopsis.split('\n')) {
      const m = /^uniroute (\[|[a-z-]+)(?: ([a-z-]+))?/.exec(l);
      if (m) cur = m[1] === '[' ? '(global)' : SUBS.has(m[1]) ? `${m[1]} ${m[2]}` : m[1];
      byCommand.set(cur, (byCommand.get(cur) ?? '') + ' ' + l);
    }
    const cmds = commands();
    expect(cmds.length).toBeGreaterThanOrEqual(12);
    for (const c of cmds) {
      expect(byCommand.has(c), `docs/cli.md's synopsis lacks "uniroute ${c}"`).toBe(true);
      const text = byCommand.get(c)!;
      for (const o of optionsOf(c)) expect(text, `docs/cli.md: uniroute ${c} ${o} is not listed`).toMatch(new RegExp(`${o}(?![a-z-])`));
      for (const o of text.matchAll(/(--[a-z0-9-]+)/g)) expect(optionsOf(c), `docs/cli.md lists uniroute ${c} ${o[1]}, which it does not have`).toContain(o[1]);
    }
    // the options of uniroute itself
    const global = [...help([]).matchAll(/^ {2}(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1]).filter((o) => o !== '--help');
    expect(global.length).toBeGreaterThanOrEqual(4);
    for (const o of global) expect(byCommand.get('(global)'), `docs/cli.md: uniroute ${o} is not listed`).toMatch(new RegExp(`${o}(?![a-z-])`));
  });

  it('every `uniroute <command> --option` and `npm run <script>` in the README and docs exists', () => {
    const cmds = new Set(commands());
    const opts = new Map([...cmds].map((c) => [c, new Set(optionsOf(c))]));
    const global = new Set(['--threads', '--quiet', '-q', '--backend', '--version', '-V', '--help']);
    const scripts = new Set(Object.keys(JSON.parse(read('package.json')).scripts));
    const problems: string[] = [];
    let seen = 0;
    for (const page of PAGES) {
      const text = read(page);
      const blocks = blocksOf(text).filter((b) => RUN.has(b.lang) || b.lang === 'text');
      // code blocks (where an unknown command is an error too) and `inline code`
      const spans = [...blocks.map((b) => ({ code: b.code, block: true })), ...[...text.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`\n]+)`/g)].map((m) => ({ code: m[1], block: false }))];
      for (const { code, block } of spans)
        for (const raw of code.replace(/\\\n/g, ' ').split('\n'))
          for (const part of raw.replace(/\s#.*$/, '').split(/\||&&|;|\$\(|\|\|/)) {
            for (const s of part.matchAll(/npm run ([a-z:-]+)/g)) if (!scripts.has(s[1])) problems.push(`${page}: no npm script "${s[1]}"`);
            const m0 = /(?:^|\s)(?:npx )?uniroute((?:\s+(?:--threads \d+|--backend \w+|--quiet|-q))*)\s+([a-z][\w-]*)(.*)$/.exec(part);
            if (!m0) continue;
            const sub = SUBS.has(m0[2]) ? /^\s+([a-z-]+)(.*)$/.exec(m0[3]) : null;
            const m = sub ? [m0[0], m0[1], `${m0[2]} ${sub[1]}`, sub[2]] : m0;
            if (!cmds.has(m[2])) {
              if (block && !/^(FILE|DIR)/.test(m[2])) problems.push(`${page}: no command "uniroute ${m[2]}" (${part.trim()})`);
              continue;
            }
            seen++;
            for (const o of m[3].matchAll(/(?:^|[\s[(|])(--[a-z0-9-]+)/g)) if (!opts.get(m[2])!.has(o[1]) && !global.has(o[1])) problems.push(`${page}: uniroute ${m[2]} has no ${o[1]} (${part.trim()})`);
          }
    }
    expect(seen).toBeGreaterThan(50);
    expect(problems).toEqual([]);
  });

  it('links between the pages resolve, to files and to headings', () => {
    const slug = (h: string) => h.toLowerCase().replace(/[`*]/g, '').replace(/[^\p{L}\p{N} _-]/gu, '').trim().replace(/ /g, '-');
    const problems: string[] = [];
    for (const page of PAGES) {
      const text = read(page).replace(/```[\s\S]*?```/g, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^https?:/.test(target)) continue;
        const [file, anchor] = target.split('#');
        const path = file ? resolve(ROOT, page, '..', file) : join(ROOT, page);
        if (!existsSync(path)) {
          problems.push(`${page}: ${target} (no such file)`);
          continue;
        }
        if (anchor && path.endsWith('.md')) {
          const heads = [...readFileSync(path, 'utf8').matchAll(/^#+ (.*)$/gm)].map((h) => slug(h[1]));
          if (!heads.includes(anchor)) problems.push(`${page}: ${target} (no such heading)`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('the README: the two commands first, a walk-through, a link to every page of docs/, and short enough to read in ten minutes', () => {
    const readme = read('README.md');
    const first = blocksOf(readme)[0];
    expect(first.line).toBeLessThanOrEqual(4);
    expect(first.code.split('\n')).toEqual(['npm install && echo \'{"id":"1","text":"What is 17*23?"}\' | npx uniroute route', 'npm test']);
    // CI runs the README's test command
    expect(readFileSync(join(ROOT, '.ci', 'run'), 'utf8')).toMatch(/^npm test$/m);
    for (const f of readdirSync(join(ROOT, 'docs')).filter((x) => x.endsWith('.md'))) expect(readme, `the README links docs/${f}`).toContain(`](docs/${f})`);
    const words = readme.replace(/```[\s\S]*?```/g, '').replace(/<!--[\s\S]*?-->/g, '').split(/\s+/).filter((w) => /[A-Za-z]/.test(w)).length;
    expect(words, 'README words (about 200 a minute)').toBeLessThan(2000);
  });
});

describe('the results as written are the reports\' and the data\'s', () => {
  it('docs/results.md and the README\'s table are what docs/results/<set>/report.json give', async () => {
    const { RESULT_SETS, headlineTable, resultSection } = await import('../scripts/result-sets.js');
    const page = read('docs/results.md');
    const reports = RESULT_SETS.map((set) => ({ set, report: JSON.parse(read(`docs/results/${set.name}/report.json`)) }));
    for (const { set, report } of reports) {
      const at = page.indexOf(`## ${set.title}\n`);
      expect(at, set.title).toBeGreaterThan(0);
      const seconds = Number(/\((\d+) s on this machine\)/.exec(page.slice(at))![1]);
      expect(page.slice(at), set.name).toContain(resultSection(set, report, seconds));
    }
    const readme = read('README.md');
    expect(/<!-- headline:start -->\n([\s\S]*?)\n<!-- headline:end -->/.exec(readme)![1]).toBe(headlineTable(reports));
  });

  it.skipIf(!HAS_SHARED_DATA)(`the counts in the titles are the data's (${HAS_SHARED_DATA ? SHARED_DATA : SKIP_REASON})`, async () => {
    const { RESULT_SETS } = await import('../scripts/result-sets.js');
    const { loadDataset } = await import('../src/data/dataset.js');
    for (const set of RESULT_SETS) {
      const ds = await loadDataset(join(SHARED_DATA, set.name));
      const complete = ds.models.filter((m) => ds.outcomes.get(m)!.every((v) => !Number.isNaN(v))).length;
      const report = JSON.parse(read(`docs/results/${set.name}/report.json`));
      expect(report.settings.prompts, set.name).toBe(ds.prompts.length);
      expect(report.settings.llms_with_complete_outcomes, set.name).toBe(complete);
      // "(2,840 prompts; the 28 LLMs with complete outcomes)", "(3,164 prompts, 11 LLMs …)"
      expect(set.title, set.name).toContain(`${ds.prompts.length.toLocaleString('en-US')} `);
      const llms = Number(/(\d+) LLMs/.exec(set.title)![1]);
      expect(llms, `${set.name}: the title's LLMs are the complete ones`).toBe(complete);
    }
    expect(RESULT_SETS.find((s) => s.name === 'zeroeval')!.title).toContain('the 28 LLMs with complete outcomes');
  });

  it.skipIf(!HAS_SHARED_DATA)(`uniroute eval --data …/zeroeval, with no other option, reproduces the committed report's first seed (${HAS_SHARED_DATA ? SHARED_DATA : SKIP_REASON})`, () => {
    const out = mkdtempSync(join(tmpdir(), 'uniroute-ze-'));
    TEMP_DIRS.push(out);
    const methods = ['uniroute-kmeans', 'zero-router', 'best-single', 'oracle'];
    const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'eval', '--data', join(SHARED_DATA, 'zeroeval'), '--seeds', '1', '--methods', methods.join(','), '--out', out, '--quiet'], { encoding: 'utf8', timeout: 600_000 });
    expect(r.status, r.stderr).toBe(0);
    const mine = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    const committed = JSON.parse(read('docs/results/zeroeval/report.json'));
    expect(mine.settings.llms_with_complete_outcomes).toBe(28);
    expect(mine.seeds[0].unseen).toEqual(committed.seeds[0].unseen);
    expect(mine.seeds[0].chosen.k).toBe(committed.seeds[0].chosen.k);
    // the same to 7 decimals (the tables print 4), not to the last bit: a change in the order of a float32 sum
    // moves the area by ~1e-8 (the committed kmeans area is 1.3e-8 above this branch's; AVX-512, AVX2 and the SSE2
    // baseline give the same bits as each other here)
    for (const m of methods) expect(Math.abs(mine.seeds[0].audc[m] - committed.seeds[0].audc[m]), m).toBeLessThan(1e-7);
  }, 600_000);
});
