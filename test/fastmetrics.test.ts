import { describe, expect, it } from 'vitest';
import { Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../src/server/fastmetrics.js';

describe('fast metrics', () => {
  it("write prom-client's exposition text for the same observations", async () => {
    const slow = new Registry();
    const fast = new Registry();
    const buckets = [0.001, 0.01, 0.1, 1];
    const c1 = new Counter({ name: 'x_total', help: 'h', labelNames: ['model', 'status'], registers: [slow] });
    const h1 = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['route'], buckets, registers: [slow] });
    const u1 = new Histogram({ name: 'x_size', help: 'h', buckets: [1, 4], registers: [slow] });
    const c2 = new FastCounter('x_total', 'h', ['model', 'status'], fast);
    const h2 = new FastHistogram('x_seconds', 'h', ['route'], [1, 0.1, 0.01, 0.001], fast); // unsorted on purpose
    const u2 = new FastHistogram('x_size', 'h', [], [1, 4], fast);
    const obs = [0.0005, 0.001, 0.002, 0.05, 0.1, 0.7, 3, 1];
    for (const [i, v] of obs.entries()) {
      const route = i % 2 ? '/a' : '/b';
      h1.labels(route).observe(v);
      h2.labels(route).observe(v);
      c1.labels(`m${i % 3}`, '200').inc(v);
      c2.labels(`m${i % 3}`, '200').inc(v);
      u1.observe(i);
      u2.observe(i);
    }
    expect(await fast.metrics()).toBe(await slow.metrics());
    expect(await fast.metrics()).toContain('x_seconds_bucket{le="0.01",route="/b"} 2');
  });

  it('refuse a negative increment and a wrong number of labels; a child is found again, not made twice', () => {
    const c = new FastCounter('y_total', 'h', ['a', 'b'], new Registry());
    expect(() => c.labels('x').inc()).toThrow(/expected 2 label values, got 1/);
    expect(() => c.labels('x', 'y').inc(-1)).toThrow(/cannot be raised by -1/);
    expect(() => c.labels('x', 'y').inc(NaN)).toThrow(/NaN/);
    expect(c.labels('x', 'y')).toBe(c.labels('x', 'y'));
    c.labels('x', 'y').inc(2);
    expect(c.get().values).toEqual([{ value: 2, labels: { a: 'x', b: 'y' } }]);
  });
});
