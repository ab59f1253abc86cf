import * as grpc from '@grpc/grpc-js';
import { toGatewayError } from '../../core/errors.js';
import type { InferenceMetrics } from '../../observability/inference-metrics.js';
import type { Logger } from '../../observability/logger.js';
import { TRACEPARENT_HEADER, traceFrom } from '../../observability/trace-context.js';
import { logRequestFailure } from '../../observability/request-log.js';
import type { RequestContext } from '../../routing/inference-service.js';
import type { RequestAdmission, RequestTicket } from '../admission.js';
import { REQUEST_ID_HEADER, requestIdFrom } from '../request-id.js';
import { ATTEMPTS_HEADER, CACHE_HEADER, TARGET_HEADER, VARIANT_HEADER, cacheModeField } from '../served.js';
import type { CacheOutcome } from '../../cache/response-cache.js';
import { timed, timedContext } from '../timed-context.js';
import type { AccessControl } from '../auth/access-control.js';
import { admitGrpcCall } from '../auth/grpc-guard.js';
import type { CancelSignal } from '../../core/cancel.js';

export interface GrpcApiOptions {
  readonly maxMessageBytes: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
  /** Requests in flight (the gateway-wide limit, cancellation, graceful drain); absent: no limit. */
  readonly admission?: RequestAdmission;
  /** Credentials, scopes and rate limits (api/auth); absent: every call is let through. */
  readonly access?: AccessControl;
  /** Times every inference call (infergate_requests_total); absent: not measured. */
  readonly metrics?: InferenceMetrics;
}

/** gRPC's retry pushback trailer (gRFC A6): how long the client should wait before trying again. */
const RETRY_PUSHBACK = 'grpc-retry-pushback-ms';

/** The parts of a server call the context needs (unary and streaming calls alike). */
export type IncomingCall = { readonly metadata: grpc.Metadata; getDeadline(): grpc.Deadline };

/** The request's context; with `trailer`, where an inference was served goes into it (see api/served.ts). */
export function callContext(call: IncomingCall, opts: GrpcApiOptions, trailer?: grpc.Metadata, signal?: CancelSignal): RequestContext {
  const clientDeadline = clientDeadlineOf(call);
  return {
    deadline: Math.min(clientDeadline ?? Infinity, Date.now() + opts.requestTimeoutMs),
    ...(clientDeadline !== undefined ? { clientDeadline } : {}),
    ...(signal !== undefined ? { signal } : {}),
    requestId: requestIdFrom(metadataValue(call.metadata, REQUEST_ID_HEADER)),
    trace: traceFrom(metadataValue(call.metadata, TRACEPARENT_HEADER)),
    header: (name) => metadataValue(call.metadata, name),
    ...cacheModeField(metadataValue(call.metadata, 'cache-control')),
    ...(trailer !== undefined
      ? {
          onServed: (target: string, attempts: number) => {
            trailer.set(TARGET_HEADER, target);
            trailer.set(ATTEMPTS_HEADER, String(attempts));
          },
          onVariant: (_experiment: string, arm: string) => trailer.set(VARIANT_HEADER, arm),
          onCache: (outcome: CacheOutcome) => trailer.set(CACHE_HEADER, outcome),
        }
      : {}),
  };
}

/** The first text value of a metadata key (binary -bin values are not routing keys). */
export function metadataValue(metadata: grpc.Metadata, name: string): string | undefined {
  const value = metadata.get(name)[0];
  return typeof value === 'string' ? value : undefined;
}

/** The deadline the client set (grpc-timeout), if any; the request's is the earlier of it and the configured timeout. */
function clientDeadlineOf(call: IncomingCall): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Logs a failed call and turns it into the gRPC status its code maps to; the
 * status carries `trailer` (what the call had gathered for its trailers).
 */
export function serviceError(
  log: Logger,
  rpc: string,
  requestId: string | undefined,
  err: unknown,
  trailer?: grpc.Metadata,
  traceId?: string,
): grpc.ServiceError {
  const error = toGatewayError(err);
  logRequestFailure(log, { requestId, ...(traceId !== undefined ? { trace_id: traceId } : {}), rpc }, error);
  const metadata = trailer?.clone() ?? new grpc.Metadata();
  if (requestId) metadata.set(REQUEST_ID_HEADER, requestId);
  if (error.retryAfterMs !== undefined) metadata.set(RETRY_PUSHBACK, String(Math.max(1, Math.round(error.retryAfterMs))));
  return Object.assign(new Error(error.message), { code: error.grpcStatus, details: error.message, metadata });
}

/**
 * Admits a call against the gateway-wide in-flight limit (throws UNAVAILABLE
 * over it). The ticket's signal aborts when the client cancels; end it when
 * the call is done.
 */
export function admitCall(call: { on(event: 'cancelled', listener: () => void): unknown }, opts: GrpcApiOptions): RequestTicket | undefined {
  const ticket = opts.admission?.admit();
  if (ticket !== undefined) call.on('cancelled', () => ticket.cancel());
  return ticket;
}

/**
 * A unary handler from an async function: errors become gRPC statuses (and
 * are logged), and every reply, error or not, carries the request id in its
 * trailers, and for an inference the leaf that served it and the attempts.
 * Calls are admitted against the in-flight limit unless `admit` is false
 * (health and server metadata, which must answer under any load).
 */
export function unaryHandler<Req, Res>(
  rpc: string,
  opts: GrpcApiOptions,
  handler: (req: Req, ctx: RequestContext, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
  admit = true,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let ctx: RequestContext | undefined;
    let ticket: RequestTicket | undefined;
    const trailer = new grpc.Metadata();
    try {
      ticket = admit ? admitCall(call, opts) : undefined;
      ctx = callContext(call, opts, trailer, ticket?.signal);
      const requestCtx = ctx;
      const admitted = ticket;
      trailer.set(REQUEST_ID_HEADER, requestCtx.requestId ?? '');
      // Credentials, the model's scope and rate limits first (open for health and server metadata).
      admitGrpcCall(opts.access, rpc, call, call.request).then(() => handler(call.request, requestCtx, call)).then(
        (res) => {
          callback(null, res, trailer);
          admitted?.end();
        },
        (err: unknown) => {
          callback(serviceError(opts.logger, rpc, requestCtx.requestId, err, trailer, requestCtx.trace?.traceId));
          admitted?.end();
        },
      );
    } catch (err) {
      ticket?.end();
      callback(serviceError(opts.logger, rpc, ctx?.requestId, err, trailer, ctx?.trace?.traceId));
    }
  };
}

/**
 * unaryHandler() for an inference rpc: timed for the metrics from its
 * handler's start to its answer. The handler passes its context to
 * service.resolve(), which tells the timer the model.
 */
export function inferenceHandler<Req, Res>(
  rpc: string,
  opts: GrpcApiOptions,
  handler: (req: Req, ctx: RequestContext, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  const metrics = opts.metrics;
  if (metrics === undefined) return unaryHandler(rpc, opts, handler);
  return unaryHandler<Req, Res>(rpc, opts, (req, ctx, call) => {
    const timer = metrics.start();
    return timed(timer, () => handler(req, timedContext(ctx, timer), call));
  });
}

/**
 * Resolves when a streaming call takes more writes, or is cancelled (when
 * 'drain' never comes): what a server stream awaits after write() returns false.
 */
export function drained(call: {
  readonly cancelled: boolean;
  on(event: 'drain' | 'cancelled', listener: () => void): unknown;
  off(event: 'drain' | 'cancelled', listener: () => void): unknown;
}): Promise<void> {
  if (call.cancelled) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      call.off('cancelled', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
  });
}
