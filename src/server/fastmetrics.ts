/**
 * Counters and histograms for the per-request hot path, exposed through the same prom-client registry.
 *
 * prom-client hashes a label object on every inc()/observe() (even on a child from labels()), and the proxy did six
 * of those per request: 3–4 % of its CPU in `npm run bench:proxy`'s profile. Here a child is a plain object holding
 * numbers, found once per label tuple; the registry reads them only when /metrics is scraped. The text exposition
 * is prom-client's own (a `get()` returning its MetricObject shape), so the output is unchanged.
 */
import type { Registry } from 'prom-client';

/** Label values; a histogram's `le` is a number, as prom-client writes it. */
type Labels = Record<string, string | number>;

interface MetricValue {
  value: number;
  labels: Labels;
  metricName?: string;
}

abstract class FastMetric<C> {
  protected readonly children = new Map<string, { labels: Labels; child: C }>();
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
    /** Most label tuples kept; beyond, the oldest is dropped (label values come from bounded sets: LLMs, routes, statuses). */
    private readonly maxChildren = 4096,
  ) {
    registry.registerMetric(this as never);
  }

  protected abstract make(): C;

  /** The child for these label values, in the order of labelNames. */
  labels(...values: string[]): C {
    const key = values.length === 1 ? values[0] : values.join('\u0000');
    const hit = this.children.get(key);
    if (hit) return hit.child;
    if (values.length !== this.labelNames.length) throw new Error(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
    if (this.children.size >= this.maxChildren) this.children.delete(this.children.keys().next().value!);
    const labels: Labels = {};
    this.labelNames.forEach((n, i) => (labels[n] = values[i]));
    const child = this.make();
    this.children.set(key, { labels, child });
    return child;
  }

  reset(): void {
    this.children.clear();
  }
}

export class FastCounter extends FastMetric<{ value: number; inc(v?: number): void }> {
  readonly type = 'counter';
  protected make() {
    return {
      value: 0,
      inc(v = 1) {
        if (!(v >= 0)) throw new Error(`a counter cannot be raised by ${v}`);
        this.value += v;
      },
    };
  }
  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values = [...this.children.values()].map(({ labels, child }) => ({ value: child.value, labels }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export interface HistogramChild {
  /** Observations per bucket (not cumulative; the last is +Inf). */
  counts: Float64Array;
  sum: number;
  count: number;
  observe(v: number): void;
}

export class FastHistogram extends FastMetric<HistogramChild> {
  readonly type = 'histogram';
  private readonly bounds: Float64Array;
  constructor(name: string, help: string, labelNames: readonly string[], buckets: number[], registry: Registry) {
    super(name, help, labelNames, registry);
    this.bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
  }
  protected make(): HistogramChild {
    const bounds = this.bounds;
    return {
      counts: new Float64Array(bounds.length + 1),
      sum: 0,
      count: 0,
      observe(v: number) {
        if (Number.isNaN(v)) return;
        let i = 0;
        while (i < bounds.length && v > bounds[i]) i++;
        this.counts[i]++;
        this.sum += v;
        this.count++;
      },
    };
  }
  /** For a histogram without labels. */
  observe(v: number): void {
    this.labels().observe(v);
  }
  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const { labels, child } of this.children.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += child.counts[i];
        values.push({ value: acc, labels: { le: this.bounds[i], ...labels }, metricName: `${this.name}_bucket` });
      }
      values.push({ value: child.count, labels: { le: '+Inf', ...labels }, metricName: `${this.name}_bucket` });
      values.push({ value: child.sum, labels, metricName: `${this.name}_sum` });
      values.push({ value: child.count, labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
