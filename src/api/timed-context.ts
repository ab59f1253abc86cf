import type { InferenceTimer } from '../observability/inference-metrics.js';
import type { RequestContext } from '../routing/inference-service.js';

/**
 * `ctx` with its hooks also telling `timer` (the request metrics) the model
 * the request resolved to, the leaf that served it and its experiment arm;
 * the context's own hooks (response headers, trailers) still hear them.
 */
export function timedContext(ctx: RequestContext, timer: InferenceTimer): RequestContext {
  const { onServed, onVariant } = ctx;
  return {
    ...ctx,
    onRoute: (model) => timer.onRoute(model),
    onServed: (target, attempts) => {
      timer.onServed(target);
      onServed?.(target, attempts);
    },
    onVariant: (experiment, arm) => {
      timer.onVariant(experiment, arm);
      onVariant?.(experiment, arm);
    },
  };
}

/**
 * An inference handler timed from its start to its answer: `timer` ends OK
 * when it resolves, with its error when it rejects (an error it answers
 * without throwing must end the timer itself first).
 */
export async function timed<T>(timer: InferenceTimer, run: () => Promise<T>): Promise<T> {
  try {
    const value = await run();
    timer.end();
    return value;
  } catch (err) {
    timer.end(err);
    throw err;
  }
}
