/**
 * The response headers (REST) and trailing metadata (gRPC) that say where an
 * inference went: the id of the routing leaf that served it (or failed last)
 * and the number of backend calls it took, fallbacks included.
 */
export const TARGET_HEADER = 'x-infergate-target';
export const ATTEMPTS_HEADER = 'x-infergate-attempts';
/** The experiment arm an inference ran on (see experiments/assignment.ts); a client may send it back to stay on it. */
export { VARIANT_HEADER } from '../experiments/assignment.js';

/** What RequestContext.onServed reported for one request. */
export interface ServedBy {
  readonly target: string;
  readonly attempts: number;
}
