import type { Metric, Registry } from 'prom-client';

/**
 * Counters and histograms for the per-request hot path, exposed through a
 * prom-client Registry like any of its metrics. prom-client's labelled
 * children hash their label values on every inc() and observe(); here each
 * label set is a cell the caller looks up once and keeps, and recording is a
 * number increment (and, for a histogram, a search of its few bounds). Label
 * values must come from a bounded set (config names, error codes): a cell is
 * never dropped.
 */

/** What a Registry reads of a metric at a scrape (the shape prom-client's own metrics return from get()). */
export interface ExportedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: readonly { readonly labels: Readonly<Record<string, string | number>>; readonly value: number; readonly metricName?: string }[];
}

/** One label set of a CounterFamily. */
export class CounterCell {
  value = 0;

  inc(): void {
    this.value++;
  }
}

/** One label set of a HistogramFamily: per-bucket (not cumulative) counts, the sum and the count. */
export class HistogramCell {
  /** counts[i]: observations <= bounds[i] and > bounds[i-1]; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

interface Labelled<C> {
  readonly labels: Readonly<Record<string, string>>;
  readonly cell: C;
}

abstract class Family<C, L extends string> {
  readonly aggregator = 'sum' as const;
  private readonly cells = new Map<string, Labelled<C>>();

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
  ) {
    // The registry calls get() (and reset()) on what it holds; prom-client types its list as its own classes.
    registry.registerMetric(this as unknown as Metric<L>);
  }

  /** The cell of one label set (values in labelNames order), made on first use. Keep it: lookups build a key. */
  cell(...values: string[]): C {
    const key = values.join('\u0000');
    let entry = this.cells.get(key);
    if (entry === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((name, i) => (labels[name] = values[i] ?? ''));
      entry = { labels, cell: this.newCell() };
      this.cells.set(key, entry);
    }
    return entry.cell;
  }

  protected entries(): IterableIterator<Labelled<C>> {
    return this.cells.values();
  }

  protected abstract newCell(): C;
}

export class CounterFamily<L extends string> extends Family<CounterCell, L> {
  readonly type = 'counter' as const;

  protected newCell(): CounterCell {
    return new CounterCell();
  }

  get(): Promise<ExportedMetric> {
    const values: ExportedMetric['values'][number][] = [];
    for (const { labels, cell } of this.entries()) values.push({ labels, value: cell.value });
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  /** Registry.resetMetrics(): every count back to 0. */
  reset(): void {
    for (const { cell } of this.entries()) cell.value = 0;
  }
}

export class HistogramFamily<L extends string> extends Family<HistogramCell, L> {
  readonly type = 'histogram' as const;
  private readonly bounds: Float64Array;

  constructor(registry: Registry, name: string, help: string, labelNames: readonly L[], buckets: readonly number[]) {
    super(registry, name, help, labelNames);
    this.bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
  }

  protected newCell(): HistogramCell {
    return new HistogramCell(this.bounds);
  }

  /** The Prometheus histogram series: cumulative _bucket{le} (ending with +Inf), _sum and _count per label set. */
  get(): Promise<ExportedMetric> {
    const values: ExportedMetric['values'][number][] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, cell } of this.entries()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        const le = i < this.bounds.length ? this.bounds[i]! : '+Inf';
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: bucket });
      }
      values.push({ labels, value: cell.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: cell.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    for (const { cell } of this.entries()) {
      cell.counts.fill(0);
      cell.sum = 0;
      cell.count = 0;
    }
  }
}
