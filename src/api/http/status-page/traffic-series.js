// Live traffic from successive scrapes of the gateway's /metrics: rates of its counters and latency quantiles of
// its histograms over the time between two scrapes, per model and per experiment arm, for the last few minutes.
// Plain ES module shared by the status page and its tests.
import { histogramQuantile } from './prometheus-text.js';

export const REQUESTS = 'infergate_requests_total';
export const DURATION = 'infergate_request_duration_seconds';

/**
 * Whether a request's `code` label is a failure: anything but a 2xx HTTP status or gRPC OK.
 * @param {string} code
 */
export function isErrorCode(code) {
  if (/^\d+$/.test(code)) return Number(code) >= 400;
  return code !== 'OK' && code !== '';
}

/** One series' identity in a scrape: the metric name and every label, in a fixed order. */
function seriesKey(sample) {
  const names = Object.keys(sample.labels).sort();
  return `${sample.name}\u0000${names.map((n) => `${n}=${sample.labels[n]}`).join('\u0000')}`;
}

/** What a counter gained between two readings; a counter that went down was reset (a restart): all of it is new. */
function gain(previous, current) {
  if (previous === undefined) return current;
  return current >= previous ? current - previous : current;
}

/**
 * What changed between two parsed scrapes, grouped per model and per (model, arm).
 * @param {{ samples: { name: string, labels: Record<string, string>, value: number }[] }} previous
 * @param {{ samples: { name: string, labels: Record<string, string>, value: number }[] }} current
 * @param {number} seconds time between the scrapes
 * @param {(code: string) => boolean} [isError]
 * @returns {Map<string, { model: string, arm: string | null, rps: number, eps: number, p50: number | null, p99: number | null }>}
 *   keyed by `model` and by `model/arm` (arm traffic only)
 */
export function trafficBetween(previous, current, seconds, isError = isErrorCode) {
  const before = new Map();
  for (const s of previous.samples) if (s.name === REQUESTS || s.name === `${DURATION}_bucket`) before.set(seriesKey(s), s.value);
  const groups = new Map();
  const group = (model, arm) => {
    const key = arm === null ? model : `${model}/${arm}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = { model, arm, requests: 0, errors: 0, buckets: new Map() };
      groups.set(key, g);
    }
    return g;
  };
  const targets = (labels) => {
    const model = labels.model ?? '';
    const out = [group(model, null)];
    if (labels.arm) out.push(group(model, labels.arm));
    return out;
  };
  for (const s of current.samples) {
    if (s.name === REQUESTS) {
      const delta = gain(before.get(seriesKey(s)), s.value);
      const failed = isError(s.labels.code ?? '');
      for (const g of targets(s.labels)) {
        g.requests += delta;
        if (failed) g.errors += delta;
      }
    } else if (s.name === `${DURATION}_bucket`) {
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      if (Number.isNaN(le)) continue;
      const delta = gain(before.get(seriesKey(s)), s.value);
      for (const g of targets(s.labels)) g.buckets.set(le, (g.buckets.get(le) ?? 0) + delta);
    }
  }
  const out = new Map();
  for (const [key, g] of groups) {
    const buckets = [...g.buckets].map(([le, count]) => ({ le, count }));
    out.set(key, {
      model: g.model,
      arm: g.arm,
      rps: seconds > 0 ? g.requests / seconds : 0,
      eps: seconds > 0 ? g.errors / seconds : 0,
      p50: histogramQuantile(0.5, buckets),
      p99: histogramQuantile(0.99, buckets),
    });
  }
  return out;
}

/**
 * The last `windowMs` of traffic points, one per scrape after the first, per series. A scrape that comes more
 * than `maxGapMs` after the one before (the page was hidden, the gateway was unreachable) starts over from it:
 * a rate averaged over the gap would say little.
 */
export class TrafficHistory {
  /** @param {{ windowMs?: number, maxGapMs?: number, isError?: (code: string) => boolean }} [options] */
  constructor(options = {}) {
    this.windowMs = options.windowMs ?? 5 * 60_000;
    this.maxGapMs = options.maxGapMs ?? 15_000;
    this.isError = options.isError ?? isErrorCode;
    /** @type {Map<string, { model: string, arm: string | null, points: { t: number, rps: number, eps: number, p50: number | null, p99: number | null }[] }>} */
    this.series = new Map();
    this.last = undefined;
  }

  /**
   * Adds a scrape taken at `at` (ms). Returns the points it added (empty for a baseline).
   * @param {number} at
   * @param {{ samples: { name: string, labels: Record<string, string>, value: number }[] }} scrape
   */
  add(at, scrape) {
    const last = this.last;
    this.last = { at, scrape };
    const added = new Map();
    if (last !== undefined && at > last.at && at - last.at <= this.maxGapMs) {
      for (const [key, p] of trafficBetween(last.scrape, scrape, (at - last.at) / 1000, this.isError)) {
        let s = this.series.get(key);
        if (s === undefined) {
          s = { model: p.model, arm: p.arm, points: [] };
          this.series.set(key, s);
        }
        const point = { t: at, rps: p.rps, eps: p.eps, p50: p.p50, p99: p.p99 };
        s.points.push(point);
        added.set(key, point);
      }
    }
    this.prune(at);
    return added;
  }

  /** Forgets the last scrape: the next one is a new baseline (after a pause). */
  restart() {
    this.last = undefined;
  }

  prune(now) {
    const oldest = now - this.windowMs;
    for (const [key, s] of this.series) {
      let drop = 0;
      while (drop < s.points.length && s.points[drop].t < oldest) drop++;
      if (drop > 0) s.points.splice(0, drop);
      if (s.points.length === 0) this.series.delete(key);
    }
  }
}
