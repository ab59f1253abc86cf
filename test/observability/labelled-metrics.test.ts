import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CounterFamily, HistogramFamily } from '../../src/observability/labelled-metrics.js';

/**
 * The hot path's counters and histograms (cells kept by the caller, no label
 * hashing per observation) must read exactly as prom-client's own metrics do:
 * the same observations on both give the same exposition text.
 */

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVATIONS: readonly [string, string, number][] = [
  ['linear', '', 0.0004],
  ['linear', '', 0.001], // on a bound: counted in that bucket
  ['linear', '', 0.05],
  ['linear', 'b', 2.5], // past the last bound: +Inf only
  ['ranker "x"\\', 'a', 0.02], // a label value that needs escaping
];

describe('labelled metrics', () => {
  it("expose the same text as prom-client's Counter and Histogram for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const counter = new CounterFamily(ours, 't_requests_total', 'Requests.', ['model', 'arm']);
    const histogram = new HistogramFamily(ours, 't_duration_seconds', 'Latency.', ['model', 'arm'], BUCKETS);
    const refCounter = new Counter({ name: 't_requests_total', help: 'Requests.', labelNames: ['model', 'arm'], registers: [theirs] });
    const refHistogram = new Histogram({ name: 't_duration_seconds', help: 'Latency.', labelNames: ['model', 'arm'], buckets: BUCKETS, registers: [theirs] });
    for (const [model, arm, seconds] of OBSERVATIONS) {
      counter.cell(model, arm).inc();
      histogram.cell(model, arm).observe(seconds);
      refCounter.labels(model, arm).inc();
      refHistogram.labels(model, arm).observe(seconds);
    }
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toContain('t_duration_seconds_bucket{le="0.001",model="linear",arm=""} 2');
    expect(text).toContain('t_requests_total{model="linear",arm=""} 3');
  });

  it('keeps one cell per label set, and resetMetrics() zeroes every cell', async () => {
    const registry = new Registry();
    const counter = new CounterFamily(registry, 't_total', 'T.', ['code']);
    const histogram = new HistogramFamily(registry, 't_seconds', 'T.', ['code'], BUCKETS);
    expect(counter.cell('OK')).toBe(counter.cell('OK'));
    expect(counter.cell('OK')).not.toBe(counter.cell('INTERNAL'));
    counter.cell('OK').inc();
    histogram.cell('OK').observe(0.5);
    registry.resetMetrics();
    const text = await registry.metrics();
    expect(text).toContain('t_total{code="OK"} 0');
    expect(text).toContain('t_seconds_count{code="OK"} 0');
    expect(text).toContain('t_seconds_bucket{le="+Inf",code="OK"} 0');
  });
});
