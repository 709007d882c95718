/**
 * uniroute as a dependency: what the package exports, how its addon is found, and (slow: CI=true or
 * UNIROUTE_PACK_TEST=1) the packed tarball installed into an empty project, with no compiler on the PATH.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { NODE_CLI_FLAGS } from './helpers.js';

const ROOT = resolve(__dirname, '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const PACK_TEST = process.env.CI === 'true' || process.env.UNIROUTE_PACK_TEST === '1';

/** Runs node on a module source (ESM), from `cwd`. */
const nodeEval = (code: string, cwd: string, env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd, env, encoding: 'utf8', timeout: 60_000 });

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'src', 'index.js'))) throw new Error('run `npm run build` first');
});

describe('the package entry point', () => {
  it('exports is ESM with types; `import ... from "uniroute"` resolves to the built entry (a self-reference)', () => {
    expect(PKG.type).toBe('module');
    const dot = PKG.exports['.'];
    expect(Object.keys(dot)[0]).toBe('types'); // "types" must come first for TypeScript
    for (const f of [dot.types, dot.default]) expect(existsSync(join(ROOT, f)), f).toBe(true);
    const r = nodeEval("const m = await import('uniroute'); console.log(typeof m.Router, typeof m.explainRow, typeof m.addonPath)", ROOT);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('function function function');
  });

  it('every library name the README and docs/ show is exported (their code examples\' imports and the functions their text calls)', async () => {
    const readme = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))]
      .map((f) => readFileSync(join(ROOT, f), 'utf8'))
      .join('\n');
    const lib = await import(join(ROOT, 'dist', 'src', 'index.js'));
    const names = new Set<string>();
    for (const block of readme.matchAll(/```(?:ts|typescript|js|javascript)\n([\s\S]*?)```/g))
      for (const imp of block[1].matchAll(/import\s*\{([^}]*)\}\s*from\s*'uniroute'/g))
        for (const n of imp[1].split(',')) if (n.trim()) names.add(n.trim().replace(/^type\s+/, '').split(/\s+as\s+/)[0]);
    expect(names.size).toBeGreaterThan(0);
    const methods = new Set(Object.getOwnPropertyNames(lib.Router.prototype));
    // `f(…)` in running text: an export, or a method of a Router (shown as router.f(…) or plain f(…))
    const NOT_LIBRARY: Record<string, string> = { release: 'a method of the CUDA backend\'s buffer owners (native/cuda)' };
    const called = new Set<string>();
    for (const span of readme.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`\n]+)`/g))
      for (const m of span[1].matchAll(/(?<![\w.$-])(?:router\.)?([a-z][A-Za-z0-9]*)\(/g)) called.add(m[1]);
    expect(called.has('explainRow')).toBe(true);
    const missing = [...names].filter((n) => !(n in lib));
    const unknown = [...called].filter((n) => !(n in lib) && !methods.has(n) && !(n in NOT_LIBRARY));
    expect(missing, 'imported in an example of the README or docs/ but not exported').toEqual([]);
    expect(unknown, 'called in the README or docs/ but neither exported nor a Router method').toEqual([]);
  });
});

describe('loading the native addon', () => {
  /** A package folder holding the built JS and no addon: what an install on a platform with no prebuild has. */
  function bareInstall(): string {
    const dir = mkdtempSync(join(tmpdir(), 'uniroute-noaddon-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'uniroute', version: PKG.version, type: 'module' }));
    cpSync(join(ROOT, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    return dir;
  }
  const load = (dir: string) =>
    nodeEval(
      "const n = await import('./dist/src/engine/native.js'); try { n.native(); console.log('LOADED ' + n.addonPath()); } catch (e) { console.log(e.code + '\\n' + e.message); }",
      dir,
      { ...process.env, UNIROUTE_ADDON: '' },
    );

  it('names every path tried, and the fix, when no addon loads; a broken prebuild is reported with its error; a good one loads', () => {
    const dir = bareInstall();
    const none = load(dir);
    expect(none.status, none.stderr).toBe(0);
    const prebuilds = join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
    expect(none.stdout).toMatch(/^NATIVE_UNAVAILABLE\n/);
    expect(none.stdout).toContain(`${join(dir, 'build', 'Release', 'uniroute.node')} (missing)`);
    expect(none.stdout).toContain(`${join(dir, 'build', 'Debug', 'uniroute.node')} (missing)`);
    expect(none.stdout).toContain(`no prebuilt addon for ${process.platform}-${process.arch} in ${prebuilds}`);
    expect(none.stdout).toContain('npm explore uniroute -- npm run build:native');
    // a prebuild that is not a loadable library: its path and the loader's reason
    mkdirSync(prebuilds, { recursive: true });
    writeFileSync(join(prebuilds, 'uniroute.glibc.node'), 'not an ELF file');
    const broken = load(dir);
    expect(broken.stdout).toMatch(/^NATIVE_UNAVAILABLE\n/);
    expect(broken.stdout).toMatch(new RegExp(`${join(prebuilds, 'uniroute.glibc.node').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(.*(ELF|header|too short).*\\)`));
    // the real addon as the prebuild: found by node-gyp-build and loaded
    copyFileSync(join(ROOT, 'build', 'Release', 'uniroute.node'), join(prebuilds, 'uniroute.glibc.node'));
    const good = load(dir);
    expect(good.stdout.trim()).toBe(`LOADED ${join(prebuilds, 'uniroute.glibc.node')}`);
  });
});

describe('CUDA at install: compiled only for the GPUs present or asked for (CMakeLists.txt)', () => {
  const NVCC = ['/usr/local/cuda/bin/nvcc', ...(process.env.PATH ?? '').split(':').map((d) => join(d, 'nvcc'))].find((p) => existsSync(p));
  /** CMake's configure step with a stand-in nvidia-smi first on the PATH (it prints `smi`, or fails when null). */
  function configure(smi: string | null, archs?: string) {
    const dir = mkdtempSync(join(tmpdir(), 'uniroute-cuda-'));
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'nvidia-smi'), smi === null ? '#!/bin/sh\necho "NVIDIA-SMI has failed: no driver" >&2\nexit 9\n' : `#!/bin/sh\nprintf '${smi}\\n'\n`, { mode: 0o755 });
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, UNIROUTE_CUDA_ARCHS: archs ?? '' };
    const r = spawnSync('cmake', ['-S', ROOT, '-B', join(dir, 'build'), '-DUNIROUTE_TESTS=OFF'], { env, encoding: 'utf8', timeout: 120_000 });
    return { status: r.status, lines: (r.stdout + r.stderr).split('\n').filter((l) => l.includes('uniroute:')).join('\n') };
  }

  it('no GPU and no request: skipped, in one line that says how to force it', () => {
    const r = configure(null);
    expect(r.status).toBe(0);
    expect(r.lines).toMatch(/uniroute: CUDA backend skipped: no NVIDIA GPU found \(nvidia-smi\) and UNIROUTE_CUDA_ARCHS is unset; to build it anyway: UNIROUTE_CUDA_ARCHS=ptx/);
    expect(r.lines).toContain('uniroute: CUDA backend OFF');
    expect(configure('8.6', 'off').lines).toContain('uniroute: CUDA backend skipped: UNIROUTE_CUDA_ARCHS=off');
    const bad = configure(null, 'sm_8x');
    expect(bad.status).not.toBe(0);
    expect(bad.lines).toContain('"sm_8x" is not a compute capability');
  });

  it.skipIf(!NVCC)('machine code for the GPUs nvidia-smi lists, or UNIROUTE_CUDA_ARCHS names, plus PTX for compute_75 (needs nvcc)', () => {
    const found = configure('8.6\n9.0\n8.6');
    expect(found.status, found.lines).toBe(0);
    expect(found.lines).toContain('uniroute: CUDA for 86-real;90-real;75-virtual (from nvidia-smi)');
    expect(found.lines).toContain('uniroute: CUDA backend ON');
    const asked = configure(null, '7.0, sm_89');
    expect(asked.lines).toContain('compute capability 7.0 (UNIROUTE_CUDA_ARCHS) is older than');
    expect(asked.lines).toContain('uniroute: CUDA for 89-real;75-virtual (from UNIROUTE_CUDA_ARCHS)');
  });
});

describe('uniroute info', () => {
  it('names the addon file it loaded (here: the source build)', () => {
    const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, join(ROOT, 'bin', 'uniroute.js'), 'info', '--json'], { encoding: 'utf8', env: { ...process.env, UNIROUTE_ADDON: '' } });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).addon).toBe(join(ROOT, 'build', 'Release', 'uniroute.node'));
    const text = spawnSync(process.execPath, [...NODE_CLI_FLAGS, join(ROOT, 'bin', 'uniroute.js'), 'info'], { encoding: 'utf8', env: { ...process.env, UNIROUTE_ADDON: '' } });
    expect(text.stdout).toContain(`\naddon      ${join(ROOT, 'build', 'Release', 'uniroute.node')}\n`);
  });
});

// slow (about a minute): runs when CI=true or UNIROUTE_PACK_TEST=1
describe.skipIf(!PACK_TEST)('npm pack, then install the tarball into an empty project (CI=true or UNIROUTE_PACK_TEST=1)', () => {
  it('needs no compiler and runs no install script; the library, its types and npx uniroute work from there', () => {
    const work = mkdtempSync(join(tmpdir(), 'uniroute-pack-'));
    // a copy of the working tree (tracked and untracked, not ignored files), so that packing leaves the tree alone
    const stage = join(work, 'stage');
    const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
    for (const f of files) {
      if (!existsSync(join(ROOT, f))) continue; // deleted in the working tree
      mkdirSync(dirname(join(stage, f)), { recursive: true });
      copyFileSync(join(ROOT, f), join(stage, f));
    }
    symlinkSync(join(ROOT, 'node_modules'), join(stage, 'node_modules'), 'dir');
    const pack = spawnSync('npm', ['pack', '--pack-destination', work], { cwd: stage, encoding: 'utf8', timeout: 600_000 });
    expect(pack.status, (pack.stdout + pack.stderr).slice(-3000)).toBe(0);
    const tgz = join(work, `${PKG.name}-${PKG.version}.tgz`);
    const paths = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n').filter(Boolean).map((p) => p.replace(/^package\//, ''));
    expect(paths).toContain('dist/src/index.d.ts');
    expect(paths.some((p) => new RegExp(`^prebuilds/${process.platform}-${process.arch}/uniroute[.a-z]*\\.node$`).test(p))).toBe(true);
    // the prebuild was compiled with the portable flags, never for the packing machine's CPU
    const cache = readFileSync(join(stage, 'build-prebuild', 'CMakeCache.txt'), 'utf8');
    expect(cache).toMatch(/^UNIROUTE_NATIVE_ARCH:[A-Z]+=OFF$/m);
    expect(cache).toMatch(/^UNIROUTE_CUDA:[A-Z]+=OFF$/m);
    const buildFiles = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? buildFiles(join(dir, e.name)) : /^(build\.ninja|flags\.make|rules\.ninja)$/.test(e.name) ? [join(dir, e.name)] : [],
      );
    const flags = buildFiles(join(stage, 'build-prebuild'));
    expect(flags.length).toBeGreaterThan(0);
    for (const f of flags) expect(readFileSync(f, 'utf8'), f).not.toContain('-march=native');
    // packing put the working tree's package.json back as it was
    expect(readFileSync(join(stage, 'package.json'), 'utf8')).toBe(readFileSync(join(ROOT, 'package.json'), 'utf8'));

    // the tarball's package.json has no install-time script (and no implicit node-gyp build)
    const manifest = JSON.parse(execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' }));
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts?.[s], s).toBeUndefined();
    expect(manifest.gypfile).toBe(false);

    // an empty project whose PATH has node, npm, npx and sh and nothing else: no compiler, no cmake, no make
    const app = join(work, 'app');
    const bin = join(app, '.bin-only');
    mkdirSync(bin, { recursive: true });
    const which = (c: string) => execFileSync('sh', ['-c', `readlink -f "$(command -v ${c})"`], { encoding: 'utf8' }).trim();
    symlinkSync(process.execPath, join(bin, 'node'));
    for (const c of ['npm', 'npx', 'sh']) symlinkSync(which(c), join(bin, c));
    const env = { ...process.env, PATH: bin, UNIROUTE_ADDON: '', UNIROUTE_ROUTER: '', npm_config_foreground_scripts: 'true' };
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    expect(spawnSync('sh', ['-c', 'command -v cc gcc g++ c++ cmake make'], { env, encoding: 'utf8' }).stdout.trim()).toBe('');
    const install = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tgz], { cwd: app, env, encoding: 'utf8', timeout: 300_000 });
    const said = install.stdout + install.stderr;
    expect(install.status, said.slice(-3000)).toBe(0);
    expect(said).not.toMatch(/install-scripts|node-gyp|cmake/i);
    const installed = join(app, 'node_modules', 'uniroute');
    expect(existsSync(join(installed, 'build'))).toBe(false); // nothing was compiled

    // the library: routes a prompt with the prebuilt addon
    const lib = nodeEval(
      "import { Router, explainRow, decisionRecord, defaultRouterPath, addonPath } from 'uniroute';\n" +
        "const router = await Router.load(defaultRouterPath());\n" +
        "const batch = await router.routeBatch(['What is 17*23?']);\n" +
        'console.log(JSON.stringify({ addon: addonPath(), decision: decisionRecord(explainRow(batch, 0), true) }));',
      app,
      env,
    );
    expect(lib.status, lib.stderr).toBe(0);
    const out = JSON.parse(lib.stdout);
    expect(out.addon.startsWith(join(installed, 'prebuilds', `${process.platform}-${process.arch}`))).toBe(true);
    expect(typeof out.decision.model).toBe('string');
    expect(out.decision.model.length).toBeGreaterThan(0);

    // the types: a consumer's TypeScript resolves them through "exports" (a wrong use must be an error, so they are not any)
    writeFileSync(
      join(app, 'use.ts'),
      [
        "import { Router, explainRow, decisionRecord, UnirouteError, type RouteBatch } from 'uniroute';",
        'const router: Router = await Router.load(process.argv[2]);',
        "const batch: RouteBatch = await router.routeBatch(['What is 17*23?'], { tradeoff: 0.5 });",
        'const model: string = explainRow(batch, 0).model;',
        'console.log(model, decisionRecord(explainRow(batch, 0), true), new UnirouteError(\'INVALID_ARGUMENT\', \'x\').code);',
        '// @ts-expect-error: a decision\'s model is a string, not a number',
        'const wrong: number = explainRow(batch, 0).model;',
        'console.log(wrong);',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
        },
        files: ['use.ts'],
      }),
    );
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);

    // the command, from the project: npx finds the installed bin (not the registry)
    const cli = spawnSync('npx', ['--no-install', 'uniroute', 'route'], { cwd: app, env, input: '{"id":"q1","text":"What is 17*23?"}\n', encoding: 'utf8', timeout: 60_000 });
    expect(cli.status, cli.stderr).toBe(0);
    const line = JSON.parse(cli.stdout.trim());
    expect(line.id).toBe('q1');
    expect(typeof line.model).toBe('string');
    const version = spawnSync('npx', ['--no-install', 'uniroute', '--version'], { cwd: app, env, encoding: 'utf8' });
    expect(version.stdout).toBe(`${PKG.version}\n`);
  }, 600_000); // a CMake build, a pack and an install, beside the other test files on two cores
});
