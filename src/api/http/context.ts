import type { HttpBindings } from '@hono/node-server';
import type { Context } from 'hono';
import { invalidArgument, type GatewayError } from '../../core/errors.js';
import type { RequestAdmission, RequestTicket } from '../admission.js';
import type { InferenceMetrics, InferenceTimer } from '../../observability/inference-metrics.js';
import type { Logger } from '../../observability/logger.js';
import { TRACEPARENT_HEADER, traceFrom, type TraceContext } from '../../observability/trace-context.js';
import { encodeError } from '../../protocols/v2/rest-codec.js';
import type { RequestContext } from '../../routing/inference-service.js';
import { cacheModeField, type ServedBy } from '../served.js';
import { timed } from '../timed-context.js';
import type { CacheOutcome } from '../../cache/response-cache.js';
import type { AccessControl } from '../auth/access-control.js';
import type { Principal } from '../auth/principal.js';

/**
 * The Hono environment of every REST surface: the Node request/response, the
 * request id, and where an inference was served (set through the context's
 * onServed; the app's middleware turns it into response headers).
 */
export type HttpEnv = {
  Bindings: HttpBindings;
  Variables: {
    requestId: string;
    servedBy?: ServedBy;
    variant?: string;
    ticket?: RequestTicket;
    cache?: CacheOutcome;
    principal?: Principal;
    /** The request's W3C trace (see traceOf). */
    trace?: TraceContext;
    /** An inference's metrics timer (see inferenceRoute). */
    inference?: InferenceTimer;
  };
};
export type HttpContext = Context<HttpEnv>;

export interface HttpApiOptions {
  readonly maxBodyBytes: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  /** Requests in flight (the gateway-wide limit, cancellation, graceful drain); absent: no limit. */
  readonly admission?: RequestAdmission;
  /** Credentials, scopes and rate limits (api/auth); absent: every request is let through. */
  readonly access?: AccessControl;
  /** Times every inference request (infergate_requests_total); absent: not measured. */
  readonly metrics?: InferenceMetrics;
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
    trace: traceOf(c),
    header: (name) => {
      const value = headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
    onServed: (target, attempts) => {
      c.set('servedBy', { target, attempts });
      c.get('inference')?.onServed(target);
    },
    onVariant: (experiment, arm) => {
      c.set('variant', arm);
      c.get('inference')?.onVariant(experiment, arm);
    },
    onCache: (outcome) => c.set('cache', outcome),
  };
}

/** The request's trace: the client's traceparent when valid, else a new trace; made once per request. */
export function traceOf(c: HttpContext): TraceContext {
  let trace = c.get('trace');
  if (trace === undefined) {
    const header = c.env.incoming.headers[TRACEPARENT_HEADER];
    trace = traceFrom(typeof header === 'string' ? header : undefined);
    c.set('trace', trace);
  }
  return trace;
}

/**
 * An inference route, timed for the metrics from its start to its answer
 * (an error it answers without throwing ends c.get('inference') first). The
 * handler passes c.get('inference') to service.resolve(), which tells it the
 * model; requestContext's hooks tell it the leaf and the arm.
 */
export function inferenceRoute(opts: HttpApiOptions, handler: (c: HttpContext) => Promise<Response>): (c: HttpContext) => Promise<Response> {
  return opts.metrics === undefined ? handler : (c) => timeInference(c, opts, () => handler(c));
}

/** Runs one inference timed for the metrics (see inferenceRoute), for routes that are not all inferences. */
export function timeInference(c: HttpContext, opts: HttpApiOptions, run: () => Promise<Response>): Promise<Response> {
  const metrics = opts.metrics;
  if (metrics === undefined) return run();
  const timer = metrics.start();
  c.set('inference', timer);
  return timed(timer, run);
}

/**
 * The deadline the client asked for with x-infergate-timeout-ms, if any (the
 * request's deadline is the earlier of it and server.request_timeout_ms, as
 * for a gRPC deadline).
 */
export function clientDeadlineOf(header: string | string[] | undefined, now: number): number | undefined {
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
