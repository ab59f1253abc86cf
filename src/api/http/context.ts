import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import { invalidArgument, type GatewayError } from '../../core/errors.js';
import type { RequestAdmission, RequestTicket } from '../admission.js';
import type { Logger } from '../../observability/logger.js';
import { encodeError } from '../../protocols/v2/rest-codec.js';
import type { RequestContext } from '../../routing/inference-service.js';
import { cacheModeField, type ServedBy } from '../served.js';
import type { CacheOutcome } from '../../cache/response-cache.js';

/**
 * The Hono environment of every REST surface: the Node request/response, the
 * request id, and where an inference was served (set through the context's
 * onServed; the app's middleware turns it into response headers).
 */
export type HttpEnv = {
  Bindings: HttpBindings;
  Variables: { requestId: string; servedBy?: ServedBy; variant?: string; ticket?: RequestTicket; cache?: CacheOutcome };
};
export type HttpContext = Context<HttpEnv>;

export interface HttpApiOptions {
  readonly maxBodyBytes: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  /** Requests in flight (the gateway-wide limit, cancellation, graceful drain); absent: no limit. */
  readonly admission?: RequestAdmission;
}

/** A client's own timeout for the whole request, in milliseconds (REST has no standard one; gRPC has grpc-timeout). */
export const TIMEOUT_HEADER = 'x-infergate-timeout-ms';
/** setTimeout's largest delay. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export { REQUEST_ID_HEADER, requestIdFrom } from '../request-id.js';

export function requestContext(c: HttpContext, opts: HttpApiOptions): RequestContext {
  const headers = c.env.incoming.headers;
  const signal = c.get('ticket')?.signal;
  const now = Date.now();
  const clientDeadline = clientDeadlineOf(headers[TIMEOUT_HEADER], now);
  return {
    deadline: Math.min(clientDeadline ?? Infinity, now + opts.requestTimeoutMs),
    ...(clientDeadline !== undefined ? { clientDeadline } : {}),
    ...(signal !== undefined ? { signal } : {}),
    ...cacheModeField(headers['cache-control']),
    requestId: c.get('requestId'),
    header: (name) => {
      const value = headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
    onServed: (target, attempts) => c.set('servedBy', { target, attempts }),
    onVariant: (_experiment, arm) => c.set('variant', arm),
    onCache: (outcome) => c.set('cache', outcome),
  };
}

/**
 * The deadline the client asked for with x-infergate-timeout-ms, if any (the
 * request's deadline is the earlier of it and server.request_timeout_ms, as
 * for a gRPC deadline).
 */
function clientDeadlineOf(header: string | string[] | undefined, now: number): number | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header[0] : header;
  if (text === undefined || !/^[0-9]{1,10}$/.test(text) || Number(text) < 1 || Number(text) > MAX_TIMEOUT_MS) {
    throw invalidArgument(`${TIMEOUT_HEADER} must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got ${JSON.stringify(text)}`);
  }
  return now + Number(text);
}

/** A v2-style error reply, `{"error": "..."}`; front doors with their own error shape build theirs. */
export function errorResponse(error: GatewayError, status = error.httpStatus, headers: Record<string, string> = {}): Response {
  const res = new Response(encodeError(error.message), { status, headers: { 'content-type': 'application/json', ...headers } });
  return withRetryAfter(res, error);
}

/** Adds Retry-After (whole seconds, at least 1) when the error says when to try again (load shed, breakers open). */
export function withRetryAfter(res: Response, error: GatewayError): Response {
  if (error.retryAfterMs !== undefined) res.headers.set('retry-after', String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))));
  return res;
}
