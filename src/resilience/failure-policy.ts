import { GatewayError } from '../core/errors.js';
import type { CancelSignal } from '../core/cancel.js';

/**
 * Which failures say something about an endpoint, and which are safe to
 * retry. One place, so the breakers, the retries and the docs agree.
 */

/**
 * Whether a failed call counts against the endpoint's circuit breaker.
 * The backend's own failures count (unreachable, reset, 5xx, UNAVAILABLE,
 * INTERNAL) and so do its timeouts (of the backend's, the route's or the
 * server's request timeout), unless the deadline that ran out was one the
 * client asked for (a client asking for 5 ms says nothing about the server).
 * Client mistakes (4xx, INVALID_ARGUMENT, NOT_FOUND...), cancellations and
 * overload answers (429, RESOURCE_EXHAUSTED) do not.
 */
export function countsAgainstEndpoint(err: unknown, clientDeadline: number | undefined, clientSignal: CancelSignal | undefined): boolean {
  if (clientSignal?.aborted === true) return false;
  if (!(err instanceof GatewayError)) return true;
  switch (err.code) {
    case 'UNAVAILABLE':
    case 'INTERNAL':
    case 'UNKNOWN':
    case 'DATA_LOSS':
      return true;
    case 'DEADLINE_EXCEEDED':
      return clientDeadline === undefined || Date.now() < clientDeadline;
    default:
      return false;
  }
}

/**
 * Whether a failed call may be sent again: only when the backend cannot have
 * acted on it or said it did not: the connection was refused or broke before
 * any answer, or it answered UNAVAILABLE (gRPC) / 502 / 503 (REST). Timeouts
 * are not retried: the request may still be running, and a second copy
 * doubles the load on a server that is already slow.
 */
export function isRetryable(err: unknown): boolean {
  return err instanceof GatewayError && (err.transport === 'connect' || err.code === 'UNAVAILABLE');
}
