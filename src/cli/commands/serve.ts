/** `uniroute serve`: HTTP server: /v1/route, /v1/models (admin: UNIROUTE_ADMIN_TOKEN), /v1/chat/completions (OpenAI-compatible proxy), /healthz, /readyz, /metrics. */
import { type Command } from 'commander';
import { UnirouteError } from '../../errors.js';
import { type CliContext, accessFrom, intArg, numArg, POOL_HELP, loadWithPool, feedbackOptions, usage, warnLine } from '../shared.js';

/** Why the server could not listen, in words (not Node's "listen EADDRINUSE: address already in use 127.0.0.1:8080"). */
function listenError(e: NodeJS.ErrnoException, host: string, port: number): UnirouteError {
  const at = `${host}:${port}`;
  switch (e.code) {
    case 'EADDRINUSE':
      return new UnirouteError('IO_ERROR', `cannot listen on ${at}: another process is listening there (another uniroute serve?); pick another --port, or stop it`);
    case 'EACCES':
      return new UnirouteError('IO_ERROR', `cannot listen on ${at}: not allowed (ports below 1024 need privileges); pick a --port of 1024 or more`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UnirouteError('IO_ERROR', `cannot listen on ${at}: --host ${host} is not an address of this machine (127.0.0.1 for this machine only, 0.0.0.0 for every interface)`);
    default:
      return new UnirouteError('IO_ERROR', `cannot listen on ${at}: ${e.code ?? ''} ${e.message}`.trim());
  }
}

export function registerServe(program: Command, { quiet }: CliContext): void {
  program
    .command('serve')
    .description('HTTP server and LLM gateway: /v1/route, /v1/models (admin: UNIROUTE_ADMIN_TOKEN), /v1/chat/completions (OpenAI) and /v1/messages (Anthropic) routed to your upstreams, /v1/responses, /v1/embeddings, /v1/completions passed through, /v1/files and /v1/batches (the Batch API, routed per line), /healthz, /readyz, /metrics')
    .option('--router <file>', 'router file (loaded, and where admin pool changes are saved); default: the built-in router, read-only')
    .option('--embedder-url <url>', 'for a router on a remote embedder: send its prompts to this endpoint (or UNIROUTE_EMBEDDER_URL, or the config\'s embedder.url); the URL recorded in the file is not used')
    .option('--trust-embedder-url', 'for a router on a remote embedder: use the endpoint recorded in the router file (or UNIROUTE_TRUST_EMBEDDER_URL=1, or embedder.trust_file_url: true)')
    .option('--embedder-key-env <var>', "the environment variable holding the embedding endpoint's API key (or UNIROUTE_EMBEDDER_KEY, or embedder.key_env); a key variable named in a router file is never used")
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port, 0 to 65535 (0: any free port)', intArg('--port', 0, 65535), 8080)
    .option('--pool <url>', `${POOL_HELP}; admin changes go there, other processes' changes arrive within 1 s`)
    .option('--config <file>', 'gateway config, YAML or JSON: upstreams (deployments, provider openai|anthropic, context_window, price, fallbacks), presets ("model": "uniroute/<name>"), retry, breaker, timeouts, limits, client keys (rpm, tpm, max_usd_per_day) (docs/gateway.md); SIGHUP re-reads it')
    .option('--upstreams <file>', 'the older upstreams-only file {"upstreams": {...}}: read as a config file')
    .option('--batch-window-ms <ms>', 'micro-batching window; 0: the requests that arrive in one event-loop turn go to the engine together', numArg('--batch-window-ms'), 0)
    .option('--max-prompt-chars <n>', 'longest prompt accepted', intArg('--max-prompt-chars', 1), 100_000)
    .option('--max-prompts <n>', 'most prompts in one /v1/route request', intArg('--max-prompts', 1), 1024)
    .option('--body-limit <bytes>', 'largest request body', intArg('--body-limit', 1024), 4 * 1024 * 1024)
    .option('--connect-timeout-ms <ms>', 'default upstream connect timeout', intArg('--connect-timeout-ms', 1))
    .option('--headers-timeout-ms <ms>', 'default time to the upstream response headers', intArg('--headers-timeout-ms', 1))
    .option('--idle-timeout-ms <ms>', 'default longest gap between two chunks of an upstream response (never a cap on a whole stream)', intArg('--idle-timeout-ms', 1))
    .option('--upstream-timeout-ms <ms>', 'older name of --headers-timeout-ms', intArg('--upstream-timeout-ms', 1))
    .option('--log', 'log every request (JSON lines on stdout), with one decision line per chat completion')
    .option('--batch-dir <dir>', 'the Batch API\'s folder: uploads, and batches.sqlite when the pool is not SQLite or Redis (default: batch.dir of the config, PATH.batch beside a sqlite:PATH pool, else ~/.uniroute/batch)')
    .option('--no-batch-worker', 'with a Redis pool: do not take batch lines from the queue here (leave them to `uniroute worker`)')
    .option('--feedback-half-life <hours>', 'with --pool: decay an LLM\'s older evidence with this half-life as feedback arrives, so Ψ follows drift', numArg('--feedback-half-life'))
    .addHelpText(
      'after',
      [
        '',
        'Environment:',
        '  UNIROUTE_ADMIN_TOKEN       bearer token of POST and DELETE /v1/models (admin is off without it; a config\'s',
        '                             tokens.admin_env names another variable)',
        '  UNIROUTE_FEEDBACK_TOKEN    bearer token of POST /v1/feedback (production outcomes; needs --pool)',
        '  UNIROUTE_FEEDBACK_SECRET   signs the decision ids that feedback refers to: the same on every replica and for',
        '                             `uniroute feedback`; without it ids hold only for this process',
        '  UNIROUTE_BACKEND, UNIROUTE_THREADS, UNIROUTE_ROUTER   as --backend, --threads, the default --router',
      ].join('\n'),
    )
    .action(async (o) => {
      const { buildApp } = await import('../../server/app.js');
      const { loadConfig, parseConfig, checkAgainstPool } = await import('../../server/config.js');
      if (o.config && o.upstreams) usage('INVALID_ARGUMENT', 'give --config or --upstreams, not both (a config file has an "upstreams" key)');
      if (process.env.UNIROUTE_FEEDBACK_TOKEN && !o.pool)
        warnLine('UNIROUTE_FEEDBACK_TOKEN is set but there is no --pool: POST /v1/feedback stays off (feedback changes the pool: pass --pool sqlite:PATH or redis://HOST:PORT/DB)');
      else if (o.pool && process.env.UNIROUTE_FEEDBACK_TOKEN && !process.env.UNIROUTE_FEEDBACK_SECRET)
        warnLine('UNIROUTE_FEEDBACK_SECRET is not set: decision ids are signed with a key of this process only, so feedback on them fails after a restart and on other replicas');
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
      // the config first: it may say where a remote embedder's prompts go, and with which key
      const config0 = read();
      const { router, live } = await loadWithPool(o.router, o.pool, 'serve', { access: accessFrom(o, config0.embedder, config0.source) });
      if (router.remote?.refused) {
        await live?.close();
        throw new UnirouteError('EMBEDDER_NOT_ALLOWED', router.remote.refused);
      }
      const config = check(config0);
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
        batch: { pool: o.pool, config: { ...config.batch, ...(o.batchDir ? { dir: o.batchDir } : {}) }, work: o.batchWorker !== false, log: (m) => !quiet() && process.stderr.write(`${m}\n`) },
      });
      let address: string;
      try {
        address = await app.listen({ host: o.host, port: o.port });
      } catch (e) {
        await app.close().catch(() => undefined);
        await live?.close().catch(() => undefined);
        throw listenError(e as NodeJS.ErrnoException, o.host, o.port);
      }
      const notes = [
        `${router.size} LLMs, ${router.k} clusters`,
        adminToken ? (o.router || live ? 'admin on' : 'admin read-only (no --pool or --router)') : `admin off (set ${tokenEnv})`,
        ...(live ? [`pool ${live.store.description} v${live.version}`] : []),
        `batch ${(app as unknown as { batchService?: { description: string } }).batchService?.description ?? 'off'}`,
        config.upstreams.size ? `${config.upstreams.size} upstreams, ${config.presets.size} presets${config.keys.size ? `, ${config.keys.size} client keys` : ''}` : 'no upstreams (give --config FILE to proxy chat requests)',
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
}
