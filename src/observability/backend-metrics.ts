import { Histogram, type Registry } from 'prom-client';
import type { BatchObserver } from '../batching/dynamic-batcher.js';
import { GatewayError } from '../core/errors.js';
import type { CallObserver, EndpointCallRecorder } from '../resilience/resilient-backend.js';
import { REQUEST_BUCKETS } from './inference-metrics.js';
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './labelled-metrics.js';

/** Rows per batch sent by the dynamic batchers. */
export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/**
 * infergate_backend_requests_total{backend,endpoint,code} and
 * infergate_backend_request_duration_seconds{backend,endpoint}: every
 * attempt of every backend call (retries each count), as ResilientBackend
 * reports them. Each endpoint gets its recorder once, when its backend is
 * built, with its histogram child bound and its counter children by code.
 */
export class BackendCallMetrics implements CallObserver {
  private readonly total: CounterFamily<'backend' | 'endpoint' | 'code'>;
  private readonly duration: HistogramFamily<'backend' | 'endpoint'>;
  /** One recorder per backend and endpoint, shared by the backends a config reload rebuilds. */
  private readonly recorders = new Map<string, EndpointRecorder>();

  constructor(registry: Registry) {
    this.total = new CounterFamily(
      registry,
      'infergate_backend_requests_total',
      'Backend call attempts (retries included), by backend, endpoint and code (OK or the error code).',
      ['backend', 'endpoint', 'code'],
    );
    this.duration = new HistogramFamily(
      registry,
      'infergate_backend_request_duration_seconds',
      'Backend call attempt latency (streams: to the first part), by backend and endpoint.',
      ['backend', 'endpoint'],
      REQUEST_BUCKETS,
    );
  }

  endpoint(backend: string, address: string): EndpointCallRecorder {
    const key = `${backend}\u0000${address}`;
    let recorder = this.recorders.get(key);
    if (recorder === undefined) {
      recorder = new EndpointRecorder(this.total, backend, address, this.duration.cell(backend, address));
      this.recorders.set(key, recorder);
    }
    return recorder;
  }
}

class EndpointRecorder implements EndpointCallRecorder {
  private readonly byCode = new Map<string, CounterCell>();

  constructor(
    private readonly total: CounterFamily<'backend' | 'endpoint' | 'code'>,
    private readonly backend: string,
    private readonly address: string,
    private readonly duration: HistogramCell,
  ) {}

  record(seconds: number, error: unknown): void {
    const code = error === undefined ? 'OK' : error instanceof GatewayError ? error.code : 'INTERNAL';
    let counter = this.byCode.get(code);
    if (counter === undefined) this.byCode.set(code, (counter = this.total.cell(this.backend, this.address, code)));
    counter.inc();
    this.duration.observe(seconds);
  }
}

/** infergate_batch_size{model}: the rows of each batch the dynamic batchers send, by public model. */
export class BatchSizeMetrics {
  private readonly sizes: Histogram<'model'>;
  private readonly observers = new Map<string, BatchObserver>();

  constructor(registry: Registry) {
    this.sizes = new Histogram({
      name: 'infergate_batch_size',
      help: 'Rows per batch sent by the dynamic batcher (the sum of its requests\' dim 0), by public model.',
      labelNames: ['model'],
      buckets: BATCH_SIZE_BUCKETS,
      registers: [registry],
    });
  }

  /** The observer of a model's batchers (one per model, whatever its leaves and config versions). */
  observer(model: string): BatchObserver {
    let observer = this.observers.get(model);
    if (observer === undefined) {
      const child = this.sizes.labels(model);
      observer = { batchSent: (rows) => child.observe(rows) };
      this.observers.set(model, observer);
    }
    return observer;
  }
}
