import { Counter, Gauge, Summary, type Registry } from 'prom-client';
import type { CacheStats } from '../cache/response-cache.js';
import type { BatchJobStats } from '../jobs/job-queue.js';
import type { BackendStatus } from '../resilience/resilient-backend.js';
import type { BreakerState } from '../resilience/circuit-breaker.js';
import type { StreamProcessorMetrics } from '../streaming/stream-processor.js';

/**
 * Where the families read at scrape time come from: the gateway's parts keep
 * their own counters and states (for the admin API too), and a scrape reads
 * them, so serving pays nothing for these families. Each source is optional
 * (a gateway without a cache, streams or jobs leaves its families empty).
 */
export interface MetricSources {
  /** The running config's version. */
  configVersion(): number;
  /** The gateway-wide admission: requests in flight now, and refused by server.max_in_flight_requests. */
  readonly admission?: { readonly inFlight: number; readonly rejected: number };
  /** The running config's backends: endpoints, breakers, load shedding. */
  backends?(): readonly BackendStatus[];
  cache?(): CacheStats;
  /** Each stream processor's counters, by name. */
  streams?(): Readonly<Record<string, StreamProcessorMetrics>>;
  /** The batch jobs queue and this instance's workers (at most one bounded Redis call, cached by the source). */
  jobs?(): Promise<BatchJobStats>;
}

/** infergate_breaker_state: 0 closed, 1 half-open, 2 open. */
const BREAKER_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, half_open: 1, open: 2 };

/** A stream processor's counter -> its outcome label. */
const STREAM_OUTCOMES = [
  ['in', 'events_in'],
  ['out', 'events_out'],
  ['failed', 'events_failed'],
  ['dead_lettered', 'events_dead_lettered'],
  ['claimed', 'events_claimed'],
  ['left_pending', 'events_left_pending'],
] as const satisfies readonly (readonly [string, keyof StreamProcessorMetrics])[];

/**
 * Registers every scrape-time family on `registry`. Their collect() resets
 * the family and sets each series from `sources`, so a series that went
 * away (a backend removed by a reload) goes away too.
 */
export function registerScrapeMetrics(registry: Registry, sources: MetricSources, version: string): void {
  const registers = [registry];

  new Gauge({
    name: 'infergate_build_info',
    help: 'Always 1; the gateway version as a label.',
    labelNames: ['version'],
    registers,
  }).set({ version }, 1);
  new Gauge({
    name: 'infergate_config_version',
    help: 'Version of the running config (each accepted change is the next one).',
    registers,
    collect() {
      this.set(sources.configVersion());
    },
  });

  const admission = sources.admission;
  new Gauge({
    name: 'infergate_in_flight_requests',
    help: 'Requests in flight at the gateway (the server.max_in_flight_requests limit counts these).',
    registers,
    collect() {
      this.set(admission?.inFlight ?? 0);
    },
  });
  new Counter({
    name: 'infergate_admission_rejected_total',
    help: 'Requests refused because the gateway was at server.max_in_flight_requests.',
    registers,
    collect() {
      this.reset();
      this.inc(admission?.rejected ?? 0);
    },
  });

  registerBackendFamilies(registry, sources);
  registerCacheFamilies(registry, sources);
  registerStreamFamilies(registry, sources);
  registerJobFamilies(registry, sources);
}

function registerBackendFamilies(registry: Registry, sources: MetricSources): void {
  const registers = [registry];
  const backends = (): readonly BackendStatus[] => sources.backends?.() ?? [];
  new Gauge({
    name: 'infergate_breaker_state',
    help: 'Circuit breaker of each endpoint: 0 closed, 1 half-open, 2 open.',
    labelNames: ['backend', 'endpoint'],
    registers,
    collect() {
      this.reset();
      for (const b of backends()) for (const e of b.endpoints) this.set({ backend: b.name, endpoint: e.address }, BREAKER_VALUE[e.breaker.state]);
    },
  });
  new Gauge({
    name: 'infergate_endpoint_ejected',
    help: 'Whether each endpoint is out of load balancing (by its breaker, the health checks or an operator): 1 or 0.',
    labelNames: ['backend', 'endpoint'],
    registers,
    collect() {
      this.reset();
      for (const b of backends()) for (const e of b.endpoints) this.set({ backend: b.name, endpoint: e.address }, e.ejected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'infergate_backend_in_flight_requests',
    help: "Calls running on each backend now (its concurrency.max_in_flight counts these).",
    labelNames: ['backend'],
    registers,
    collect() {
      this.reset();
      for (const b of backends()) this.set({ backend: b.name }, b.concurrency.inFlight);
    },
  });
  new Gauge({
    name: 'infergate_backend_queued_requests',
    help: 'Calls waiting for a slot of each backend now.',
    labelNames: ['backend'],
    registers,
    collect() {
      this.reset();
      for (const b of backends()) this.set({ backend: b.name }, b.concurrency.queued);
    },
  });
  new Counter({
    name: 'infergate_shed_requests_total',
    help: "Calls refused at once because a backend's queue was full (load shedding, 429).",
    labelNames: ['backend'],
    registers,
    collect() {
      this.reset();
      for (const b of backends()) this.inc({ backend: b.name }, b.concurrency.shed);
    },
  });
}

function registerCacheFamilies(registry: Registry, sources: MetricSources): void {
  const registers = [registry];
  new Counter({
    name: 'infergate_cache_requests_total',
    help: 'Response cache lookups by result: hit (from the store), miss (from a backend call), coalesced (joined a lookup or call another request ran; also counted as its hit or miss).',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      const stats = sources.cache?.();
      if (stats === undefined) return;
      this.inc({ result: 'hit' }, stats.hits);
      this.inc({ result: 'miss' }, stats.misses);
      this.inc({ result: 'coalesced' }, stats.coalesced);
    },
  });
  new Gauge({
    name: 'infergate_cache_store_available',
    help: 'Whether the response cache store (memory or Redis) answers: 1 or 0.',
    labelNames: ['store'],
    registers,
    collect() {
      this.reset();
      const store = sources.cache?.().store;
      if (store !== undefined) this.set({ store: store.kind }, store.available ? 1 : 0);
    },
  });
}

function registerStreamFamilies(registry: Registry, sources: MetricSources): void {
  const registers = [registry];
  const streams = (): [string, StreamProcessorMetrics][] => Object.entries(sources.streams?.() ?? {});
  new Counter({
    name: 'infergate_stream_events_total',
    help: 'Stream processor events by outcome: in (taken, claims included), out (answered), failed (left pending to retry), dead_lettered, claimed (taken over from a dead consumer), left_pending.',
    labelNames: ['stream', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const [stream, m] of streams()) for (const [outcome, field] of STREAM_OUTCOMES) this.inc({ stream, outcome }, m[field]);
    },
  });
  new Gauge({
    name: 'infergate_stream_lag',
    help: "Entries of each processor's input stream not yet delivered to its group (XINFO GROUPS; absent when unknown).",
    labelNames: ['stream'],
    registers,
    collect() {
      this.reset();
      for (const [stream, m] of streams()) if (m.lag !== null) this.set({ stream }, m.lag);
    },
  });
  new Gauge({
    name: 'infergate_stream_in_flight',
    help: 'Events each processor has taken and not yet finished.',
    labelNames: ['stream'],
    registers,
    collect() {
      this.reset();
      for (const [stream, m] of streams()) this.set({ stream }, m.in_flight);
    },
  });
  new StreamLatencySummary(registry, streams);
}

/**
 * infergate_stream_processing_seconds{stream}: a summary (quantiles 0.5 and
 * 0.99, _sum, _count) of the time from an event taken to its output written,
 * read from each processor's own log-bucketed histogram rather than kept twice.
 */
class StreamLatencySummary extends Summary<'stream' | 'quantile'> {
  constructor(
    registry: Registry,
    private readonly streams: () => [string, StreamProcessorMetrics][],
  ) {
    super({
      name: 'infergate_stream_processing_seconds',
      help: 'Stream processor latency from an event taken to its output written (quantiles within ~5%).',
      labelNames: ['stream'],
      percentiles: [0.5, 0.99],
      registers: [registry],
    });
  }

  override async get(): ReturnType<Summary<'stream' | 'quantile'>['get']> {
    const name = 'infergate_stream_processing_seconds';
    const values = [];
    for (const [stream, m] of this.streams()) {
      const { p50, p99, sum, count } = m.latency_ms;
      if (p50 !== null) values.push({ labels: { stream, quantile: 0.5 }, value: p50 / 1000 });
      if (p99 !== null) values.push({ labels: { stream, quantile: 0.99 }, value: p99 / 1000 });
      values.push({ metricName: `${name}_sum`, labels: { stream }, value: sum / 1000 });
      values.push({ metricName: `${name}_count`, labels: { stream }, value: count });
    }
    const base = await super.get(); // name, help, type and aggregator as prom-client renders a summary
    return { ...base, values };
  }
}

function registerJobFamilies(registry: Registry, sources: MetricSources): void {
  const registers = [registry];
  new Gauge({
    name: 'infergate_jobs',
    help: 'Batch jobs in the shared queue by state (queued, running, and the completed and failed ones still kept).',
    labelNames: ['state'],
    registers,
    async collect() {
      this.reset();
      const counts = (await sources.jobs?.())?.jobs;
      if (counts === undefined) return;
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  new Counter({
    name: 'infergate_job_rows_total',
    help: "Rows this instance's job workers finished, by outcome: succeeded (in the output file) or failed (in the error file).",
    labelNames: ['outcome'],
    registers,
    async collect() {
      this.reset();
      const rows = (await sources.jobs?.())?.rows;
      if (rows === undefined) return;
      this.inc({ outcome: 'succeeded' }, rows.succeeded);
      this.inc({ outcome: 'failed' }, rows.failed);
    },
  });
}
