import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ServingObservers } from '../routing/route-tree.js';
import { BackendCallMetrics, BatchSizeMetrics } from './backend-metrics.js';
import { InferenceMetrics } from './inference-metrics.js';
import { registerScrapeMetrics, type MetricSources } from './scrape-metrics.js';

export type { MetricSources } from './scrape-metrics.js';

/** Prefix of every family, prom-client's process metrics included. */
const PREFIX = 'infergate_';

/**
 * One gateway's Prometheus metrics (GET /metrics), on a Registry of its own,
 * so several gateways can run in one process (tests do).
 *
 * Families counted as requests are served (inference requests, backend call
 * attempts, batch sizes) are prom-client counters and histograms fed through
 * the observers below; everything the gateway's parts already count or know
 * (cache counters, breakers, load shedding, admission, streams, jobs, the
 * config version) is read at scrape time from the sources given to attach().
 */
export class GatewayMetrics {
  /** Starts with the process metrics, shared by every gateway of the process. */
  readonly registry = Registry.merge([processRegistry()]);
  /** infergate_requests_total, infergate_request_duration_seconds: the API's timers. */
  readonly inference: InferenceMetrics;
  /** infergate_backend_requests_total, infergate_backend_request_duration_seconds: ResilientBackend's observer. */
  readonly backendCalls: BackendCallMetrics;
  /** infergate_batch_size: the dynamic batchers' observers. */
  readonly batchSizes: BatchSizeMetrics;
  /** What the routes compiled from each config report to. */
  readonly serving: ServingObservers;
  private attached = false;

  constructor(private readonly version: string) {
    this.inference = new InferenceMetrics(this.registry);
    this.backendCalls = new BackendCallMetrics(this.registry);
    this.batchSizes = new BatchSizeMetrics(this.registry);
    this.serving = { batches: (model) => this.batchSizes.observer(model) };
  }

  /** Registers the scrape-time families over the gateway's parts, once they exist (once). */
  attach(sources: MetricSources): void {
    if (this.attached) throw new Error('metric sources are already attached');
    this.attached = true;
    registerScrapeMetrics(this.registry, sources, this.version);
  }

  /** The Prometheus text exposition format's content type. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every family, as the text exposition format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

let processMetrics: Registry | undefined;

/**
 * prom-client's default metrics (CPU, memory, heap, event loop lag, GC,
 * handles) describe the process, so every gateway of a process shares one
 * set: their collectors (a GC observer, an event loop delay monitor) are
 * installed once, not once per gateway.
 */
function processRegistry(): Registry {
  if (processMetrics === undefined) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics, prefix: PREFIX });
  }
  return processMetrics;
}
