/** Backend choice: CPU by default, CUDA when asked and usable, a clear refusal with the reason otherwise. */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { backendInfo, setBackend } from '../src/engine/native.js';
import { UnirouteError } from '../src/errors.js';
import { loadDataset } from '../src/data/dataset.js';
import { fitRouter } from '../src/router/fit.js';
import { makeSyntheticDataset, randomTexts, NODE_CLI_FLAGS } from './helpers.js';

const BIN = resolve(__dirname, '..', 'bin', 'uniroute.js');
const info = backendInfo();
afterAll(() => setBackend('cpu'));

describe('backend choice', () => {
  it('reports the backend and the CUDA state, CPU by default', () => {
    expect(info.backend).toBe('cpu');
    expect(info.backends).toEqual(['cpu', 'cuda']);
    expect(info.fallbacks).toBe(0);
    expect(info.lastFailure).toBeNull();
    expect(typeof info.cuda.compiled).toBe('boolean');
    if (!info.cuda.available) {
      expect(info.cuda.reason).toBeTruthy();
      // a machine with no driver at all is told so, not that its driver is too old
      if (info.cuda.compiled && info.cuda.driverVersion === 0) expect(info.cuda.reason).toMatch(/no NVIDIA driver is installed/);
      expect(info.cuda.device).toBeNull();
    }
  });

  it('refuses cuda with the reason when no GPU is usable; auto falls back to the CPU; bad names are refused', () => {
    expect(() => setBackend('gpu' as 'cuda')).toThrow(/"auto", "cpu" or "cuda"/);
    if (info.cuda.available) return;
    let err: unknown;
    try {
      setBackend('cuda');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnirouteError);
    expect((err as UnirouteError).code).toBe('BACKEND_UNAVAILABLE');
    expect((err as Error).message).toContain(info.cuda.reason!);
    expect(setBackend('auto')).toBe('cpu');
    expect(backendInfo().backend).toBe('cpu');
  });

  it.skipIf(!info.cuda.available)('CUDA routing makes the CPU\'s decisions', async () => {
    const { router } = await fitRouter(await loadDataset(makeSyntheticDataset(600, 2)), { seed: 1, clusters: 6 });
    const texts = randomTexts(3000, 4);
    setBackend('cpu');
    const cpu = await router.routeBatch(texts, { lambda: 0.1 });
    setBackend('cuda');
    const gpu = await router.routeBatch(texts, { lambda: 0.1 });
    setBackend('cpu');
    let differ = 0;
    for (let i = 0; i < texts.length; i++) if (cpu.cluster[i] !== gpu.cluster[i] && Math.abs(cpu.distance[i] - gpu.distance[i]) > 1e-4) differ++;
    expect(differ).toBe(0);
  });

  it('uniroute info --json and --backend on the command line', () => {
    const r = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'info', '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.backend).toBe('cpu');
    expect(Object.keys(j.cuda)).toEqual(expect.arrayContaining(['compiled', 'available', 'reason', 'device']));
    expect(j.threads).toBeGreaterThan(0);
    if (!info.cuda.available) {
      const c = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, '--backend', 'cuda', 'info'], { encoding: 'utf8' });
      expect(c.status).toBe(1);
      expect(c.stderr).toMatch(/BACKEND_UNAVAILABLE: .*unavailable/);
      const a = spawnSync(process.execPath, [...NODE_CLI_FLAGS, BIN, 'info', '--json'], { encoding: 'utf8', env: { ...process.env, UNIROUTE_BACKEND: 'auto' } });
      expect(JSON.parse(a.stdout).backend).toBe('cpu');
    }
  });
});
