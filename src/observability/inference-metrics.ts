import type { Registry } from 'prom-client';
import { GatewayError } from '../core/errors.js';
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './labelled-metrics.js';

/** The model label of a request whose model did not resolve to a configured route (never the client's string). */
export const UNKNOWN_MODEL = 'unknown';
/** Request latency buckets, in seconds. */
export const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * infergate_requests_total{model,target,arm,code} and
 * infergate_request_duration_seconds{model,arm}: every inference request of
 * every surface, timed by an InferenceTimer from its arrival to its answer
 * (a streamed answer: to its first part, as experiment results judge it).
 *
 * Label values come from the config only (route names, leaf ids, arm names)
 * or are error codes, so the series are bounded. Each label set's cell is
 * looked up in nested maps, built once: a request costs map lookups, an
 * increment and an observation, and no label object or label hashing
 * (labelled-metrics.ts).
 */
export class InferenceMetrics {
  private readonly total: CounterFamily<'model' | 'target' | 'arm' | 'code'>;
  private readonly duration: HistogramFamily<'model' | 'arm'>;
  /** model -> target -> arm -> code -> counter cell. */
  private readonly counters = new Map<string, Map<string, Map<string, Map<string, CounterCell>>>>();
  /** model -> arm -> histogram cell. */
  private readonly histograms = new Map<string, Map<string, HistogramCell>>();

  constructor(registry: Registry) {
    this.total = new CounterFamily(
      registry,
      'infergate_requests_total',
      "Inference requests answered, by public model ('unknown' when it did not resolve), serving leaf, experiment arm and code (OK or the error code).",
      ['model', 'target', 'arm', 'code'],
    );
    this.duration = new HistogramFamily(
      registry,
      'infergate_request_duration_seconds',
      'Inference request latency from arrival to answer (streamed answers: to the first part), by public model and experiment arm.',
      ['model', 'arm'],
      REQUEST_BUCKETS,
    );
  }

  /** A timer for one inference request, started now. */
  start(): InferenceTimer {
    return new InferenceTimer(this);
  }

  /** @internal InferenceTimer.end() */
  record(model: string, target: string, arm: string, code: string, seconds: number): void {
    let byTarget = this.counters.get(model);
    if (byTarget === undefined) this.counters.set(model, (byTarget = new Map()));
    let byArm = byTarget.get(target);
    if (byArm === undefined) byTarget.set(target, (byArm = new Map()));
    let byCode = byArm.get(arm);
    if (byCode === undefined) byArm.set(arm, (byCode = new Map()));
    let counter = byCode.get(code);
    if (counter === undefined) byCode.set(code, (counter = this.total.cell(model, target, arm, code)));
    counter.inc();

    let arms = this.histograms.get(model);
    if (arms === undefined) this.histograms.set(model, (arms = new Map()));
    let histogram = arms.get(arm);
    if (histogram === undefined) arms.set(arm, (histogram = this.duration.cell(model, arm)));
    histogram.observe(seconds);
  }
}

/**
 * One inference request as the metrics see it. The API starts it on arrival;
 * routing tells it the model it resolved to (onRoute), the leaf that served
 * (onServed) and the experiment arm (onVariant), the names RequestContext's
 * hooks have; end() counts it once, with the error it failed with if any.
 */
export class InferenceTimer {
  private readonly started = performance.now();
  private model = UNKNOWN_MODEL;
  private target = '';
  private arm = '';
  private ended = false;

  constructor(private readonly metrics: InferenceMetrics) {}

  /** The request's model resolved to a configured route (its public name). */
  onRoute(model: string): void {
    this.model = model;
  }

  onServed(target: string): void {
    this.target = target;
  }

  onVariant(_experiment: string, arm: string): void {
    this.arm = arm;
  }

  /** Counts the request (the first call only): OK without `error`, else the error's code. */
  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    const code = error === undefined ? 'OK' : error instanceof GatewayError ? error.code : 'INTERNAL';
    this.metrics.record(this.model, this.target, this.arm, code, (performance.now() - this.started) / 1000);
  }
}
