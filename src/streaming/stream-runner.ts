import type { StreamProcessorConfig } from '../config/stream-schema.js';
import type { Logger } from '../observability/logger.js';
import type { RecordPredictor } from '../routing/record-predictor.js';
import { StreamProcessor, type RedisFactory, type StreamProcessorMetrics } from './stream-processor.js';

/** The stream processors of one config, running: what the gateway and `infergate stream` hold. */
export interface RunningStreamProcessors {
  /** By name. */
  readonly processors: ReadonlyMap<string, StreamProcessor>;
  /** Each processor's counters, by name. */
  metrics(): Record<string, StreamProcessorMetrics>;
  /** Stops every processor (see StreamProcessor.stop): reads stop, events in flight get drainMs to finish. */
  stop(drainMs?: number): Promise<void>;
}

export interface StreamRunnerOptions {
  /** Redis connections for the processors (tests). */
  readonly redisFactory?: RedisFactory;
}

/**
 * Starts one StreamProcessor per entry. Processors on the same model and
 * version share one predictor. Resolves once each has started (see
 * StreamProcessor.start: a Redis that is down delays that by a few seconds at
 * most, and the processor keeps trying).
 */
export async function startStreamProcessors(
  settings: readonly StreamProcessorConfig[],
  predictorFor: (model: string, version: string) => RecordPredictor,
  logger: Logger,
  opts: StreamRunnerOptions = {},
): Promise<RunningStreamProcessors> {
  const predictors = new Map<string, RecordPredictor>();
  const processors = new Map<string, StreamProcessor>();
  for (const s of settings) {
    if (processors.has(s.name)) throw new Error(`two stream processors are named '${s.name}'`);
    const key = `${s.model}\u0000${s.version}`;
    let predictor = predictors.get(key);
    if (predictor === undefined) predictors.set(key, (predictor = predictorFor(s.model, s.version)));
    processors.set(s.name, new StreamProcessor(s, predictor, logger, opts.redisFactory));
  }
  const stop = async (drainMs?: number): Promise<void> => {
    await Promise.all([...processors.values()].map((p) => p.stop(drainMs)));
  };
  try {
    await Promise.all([...processors.values()].map((p) => p.start()));
  } catch (err) {
    await stop(0);
    throw err;
  }
  return {
    processors,
    metrics: () => Object.fromEntries([...processors].map(([name, p]) => [name, p.metrics()])),
    stop,
  };
}
