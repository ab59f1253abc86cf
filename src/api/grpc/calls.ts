import * as grpc from '@grpc/grpc-js';
import { toGatewayError } from '../../core/errors.js';
import type { Logger } from '../../observability/logger.js';
import { logRequestFailure } from '../../observability/request-log.js';
import type { RequestContext } from '../../routing/inference-service.js';
import { REQUEST_ID_HEADER, requestIdFrom } from '../request-id.js';
import { ATTEMPTS_HEADER, TARGET_HEADER, VARIANT_HEADER } from '../served.js';

export interface GrpcApiOptions {
  readonly maxMessageBytes: number;
  readonly requestTimeoutMs: number;
  readonly logger: Logger;
}

/** The parts of a server call the context needs (unary and streaming calls alike). */
export type IncomingCall = { readonly metadata: grpc.Metadata; getDeadline(): grpc.Deadline };

/** The request's context; with `trailer`, where an inference was served goes into it (see api/served.ts). */
export function callContext(call: IncomingCall, opts: GrpcApiOptions, trailer?: grpc.Metadata): RequestContext {
  return {
    deadline: deadlineOf(call, opts.requestTimeoutMs),
    requestId: requestIdFrom(metadataValue(call.metadata, REQUEST_ID_HEADER)),
    header: (name) => metadataValue(call.metadata, name),
    ...(trailer !== undefined
      ? {
          onServed: (target: string, attempts: number) => {
            trailer.set(TARGET_HEADER, target);
            trailer.set(ATTEMPTS_HEADER, String(attempts));
          },
          onVariant: (_experiment: string, arm: string) => trailer.set(VARIANT_HEADER, arm),
        }
      : {}),
  };
}

/** The first text value of a metadata key (binary -bin values are not routing keys). */
function metadataValue(metadata: grpc.Metadata, name: string): string | undefined {
  const value = metadata.get(name)[0];
  return typeof value === 'string' ? value : undefined;
}

/** The call's deadline, or the configured default when the client set none. */
function deadlineOf(call: IncomingCall, defaultTimeoutMs: number): number {
  const fallback = Date.now() + defaultTimeoutMs;
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? Math.min(ms, fallback) : fallback;
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
): grpc.ServiceError {
  const error = toGatewayError(err);
  logRequestFailure(log, { requestId, rpc }, error);
  const metadata = trailer?.clone() ?? new grpc.Metadata();
  if (requestId) metadata.set(REQUEST_ID_HEADER, requestId);
  return Object.assign(new Error(error.message), { code: error.grpcStatus, details: error.message, metadata });
}

/**
 * A unary handler from an async function: errors become gRPC statuses (and
 * are logged), and every reply, error or not, carries the request id in its
 * trailers, and for an inference the leaf that served it and the attempts.
 */
export function unaryHandler<Req, Res>(
  rpc: string,
  opts: GrpcApiOptions,
  handler: (req: Req, ctx: RequestContext, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    let ctx: RequestContext | undefined;
    const trailer = new grpc.Metadata();
    try {
      ctx = callContext(call, opts, trailer);
      const requestCtx = ctx;
      trailer.set(REQUEST_ID_HEADER, requestCtx.requestId ?? '');
      Promise.resolve(handler(call.request, requestCtx, call)).then(
        (res) => callback(null, res, trailer),
        (err: unknown) => callback(serviceError(opts.logger, rpc, requestCtx.requestId, err, trailer)),
      );
    } catch (err) {
      callback(serviceError(opts.logger, rpc, ctx?.requestId, err, trailer));
    }
  };
}
