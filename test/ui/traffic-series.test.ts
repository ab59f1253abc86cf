import { describe, expect, it } from 'vitest';
import { parsePrometheusText } from '../../src/api/http/status-page/prometheus-text.js';
import { isErrorCode, TrafficHistory, trafficBetween } from '../../src/api/http/status-page/traffic-series.js';

const LES = ['0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf'];

/** An exposition like the gateway's: requests by model, leaf, arm and code; durations by model and arm. */
function exposition(o: {
  requests: { model: string; target?: string; arm?: string; code: string; n: number }[];
  durations: { model: string; arm?: string; observations: number[] }[];
}): string {
  const lines = ['# TYPE infergate_requests_total counter'];
  for (const r of o.requests) {
    lines.push(`infergate_requests_total{model="${r.model}",target="${r.target ?? `models.${r.model}`}",arm="${r.arm ?? ''}",code="${r.code}"} ${r.n}`);
  }
  lines.push('# TYPE infergate_request_duration_seconds histogram');
  for (const d of o.durations) {
    const labels = `model="${d.model}",arm="${d.arm ?? ''}"`;
    for (const le of LES) {
      const bound = le === '+Inf' ? Infinity : Number(le);
      lines.push(`infergate_request_duration_seconds_bucket{${labels},le="${le}"} ${d.observations.filter((x) => x <= bound).length}`);
    }
    lines.push(`infergate_request_duration_seconds_sum{${labels}} ${d.observations.reduce((a, b) => a + b, 0)}`);
    lines.push(`infergate_request_duration_seconds_count{${labels}} ${d.observations.length}`);
  }
  return lines.join('\n') + '\n';
}

const times = (n: number, x: number): number[] => Array.from({ length: n }, () => x);

describe('trafficBetween', () => {
  it('rates counters per model and per arm, errors by code', () => {
    const before = parsePrometheusText(
      exposition({
        requests: [
          { model: 'linear', code: '200', n: 100 },
          { model: 'ranker', arm: 'a', target: 'experiments.ab.arms.a', code: '200', n: 50 },
          { model: 'ranker', arm: 'b', target: 'experiments.ab.arms.b', code: '200', n: 20 },
          { model: 'ranker', arm: 'b', target: 'experiments.ab.arms.b', code: '503', n: 1 },
        ],
        durations: [],
      }),
    );
    const after = parsePrometheusText(
      exposition({
        requests: [
          { model: 'linear', code: '200', n: 120 },
          { model: 'linear', code: '404', n: 2 }, // new since the last scrape: all of it is new
          { model: 'ranker', arm: 'a', target: 'experiments.ab.arms.a', code: '200', n: 64 },
          { model: 'ranker', arm: 'b', target: 'experiments.ab.arms.b', code: '200', n: 24 },
          { model: 'ranker', arm: 'b', target: 'experiments.ab.arms.b', code: '503', n: 3 },
        ],
        durations: [],
      }),
    );
    const t = trafficBetween(before, after, 2);
    expect([...t.keys()].sort()).toEqual(['linear', 'ranker', 'ranker/a', 'ranker/b']);
    expect(t.get('linear')).toMatchObject({ model: 'linear', arm: null, rps: 11, eps: 1 });
    expect(t.get('ranker/a')).toMatchObject({ model: 'ranker', arm: 'a', rps: 7, eps: 0 });
    expect(t.get('ranker/b')).toMatchObject({ arm: 'b', rps: 3, eps: 1 });
    // The model is the sum of its arms.
    expect(t.get('ranker')).toMatchObject({ arm: null, rps: 10, eps: 1 });
    expect(t.get('linear')!.p50).toBeNull();
  });

  it('takes latency quantiles over the observations between the scrapes only', () => {
    const fast = times(1000, 0.0008);
    const before = parsePrometheusText(exposition({ requests: [], durations: [{ model: 'linear', observations: fast }] }));
    // Since then: 100 requests at 40 ms and one at 3 s. Cumulatively p50 would still be under 1 ms.
    const after = parsePrometheusText(
      exposition({ requests: [], durations: [{ model: 'linear', observations: [...fast, ...times(100, 0.04), 3] }] }),
    );
    const t = trafficBetween(before, after, 2).get('linear')!;
    // rank 50.5 of 101, all in (0.025, 0.05] (100 there): 0.025 + 0.025 * 50.5/100.
    expect(t.p50).toBeCloseTo(0.025 + 0.025 * 0.505, 9);
    // rank 99.99: still in (0.025, 0.05].
    expect(t.p99).toBeCloseTo(0.025 + 0.025 * 0.9999, 9);
  });

  it('sums an arm-split model\'s histograms for the model and keeps each arm apart', () => {
    const before = parsePrometheusText(exposition({ requests: [], durations: [] }));
    const after = parsePrometheusText(
      exposition({
        requests: [],
        durations: [
          { model: 'ranker', arm: 'a', observations: times(10, 0.002) },
          { model: 'ranker', arm: 'b', observations: times(10, 0.2) },
        ],
      }),
    );
    const t = trafficBetween(before, after, 1);
    expect(t.get('ranker/a')!.p99).toBeLessThanOrEqual(0.0025);
    expect(t.get('ranker/b')!.p50).toBeGreaterThan(0.1);
    // Half the model's requests are 2 ms, half 200 ms: p50 at the top of the fast half's bucket, p99 among the slow.
    expect(t.get('ranker')!.p50).toBeCloseTo(0.0025, 9);
    expect(t.get('ranker')!.p99).toBeGreaterThan(0.1);
  });

  it('counts a counter that went down (a restart) from zero', () => {
    const before = parsePrometheusText(exposition({ requests: [{ model: 'm', code: '200', n: 500 }], durations: [] }));
    const after = parsePrometheusText(exposition({ requests: [{ model: 'm', code: '200', n: 8 }], durations: [] }));
    expect(trafficBetween(before, after, 2).get('m')!.rps).toBe(4);
  });
});

describe('isErrorCode', () => {
  it('counts anything but success as an error', () => {
    for (const ok of ['200', '201', 'OK']) expect(isErrorCode(ok), ok).toBe(false);
    for (const bad of ['400', '404', '429', '500', '503', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'NOT_FOUND']) expect(isErrorCode(bad), bad).toBe(true);
  });
});

describe('TrafficHistory', () => {
  const scrape = (n: number) => parsePrometheusText(exposition({ requests: [{ model: 'm', code: '200', n }], durations: [] }));

  it('adds one point per scrape after the first and keeps only the window', () => {
    const h = new TrafficHistory({ windowMs: 10_000, maxGapMs: 5_000 });
    expect(h.add(0, scrape(0)).size).toBe(0);
    expect(h.add(2_000, scrape(10)).get('m')).toMatchObject({ t: 2_000, rps: 5 });
    for (let t = 4_000; t <= 14_000; t += 2_000) h.add(t, scrape(t / 200));
    const points = h.series.get('m')!.points;
    expect(points.map((p) => p.t)).toEqual([4_000, 6_000, 8_000, 10_000, 12_000, 14_000]);
    expect(points.every((p) => p.rps === 5)).toBe(true);
  });

  it('starts over after a gap longer than maxGapMs, and after restart()', () => {
    const h = new TrafficHistory({ windowMs: 60_000, maxGapMs: 5_000 });
    h.add(0, scrape(0));
    h.add(2_000, scrape(10));
    // 30 s later (the tab was hidden): a baseline, not a rate over 30 s.
    expect(h.add(32_000, scrape(1_000)).size).toBe(0);
    expect(h.add(34_000, scrape(1_020)).get('m')!.rps).toBe(10);
    h.restart();
    expect(h.add(36_000, scrape(1_040)).size).toBe(0);
    expect(h.series.get('m')!.points).toHaveLength(2);
  });

  it('forgets a series with no point left in the window', () => {
    const h = new TrafficHistory({ windowMs: 5_000, maxGapMs: 5_000 });
    h.add(0, scrape(0));
    h.add(2_000, scrape(10));
    h.add(4_000, parsePrometheusText(''));
    h.add(6_000, parsePrometheusText(''));
    h.add(8_000, parsePrometheusText(''));
    expect(h.series.has('m')).toBe(false);
  });
});
