/**
 * Errors as values: a code a program can act on, a message a person can act on,
 * and the cause. The code maps to an HTTP status and a gRPC status in one place
 * (here), so every surface answers the same failure the same way.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'OUT_OF_RANGE'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'CANCELLED'
  | 'DEADLINE_EXCEEDED'
  | 'UNAVAILABLE'
  | 'UNIMPLEMENTED'
  | 'ABORTED'
  | 'DATA_LOSS'
  | 'INTERNAL'
  | 'UNKNOWN';
import type { CancelSignal } from './cancel.js';

/** HTTP status for each code (the KServe v2 / Triton mapping, 502/504 for upstream failures). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  CANCELLED: 499,
  DEADLINE_EXCEEDED: 504,
  UNAVAILABLE: 503,
  UNIMPLEMENTED: 501,
  ABORTED: 409,
  DATA_LOSS: 500,
  INTERNAL: 500,
  UNKNOWN: 500,
};

/** Canonical gRPC status numbers (grpc/status.h), kept here so core/ needs no gRPC library. */
export const GRPC_STATUS: Readonly<Record<ErrorCode, number>> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

const BY_GRPC_STATUS: ReadonlyMap<number, ErrorCode> = new Map(
  (Object.entries(GRPC_STATUS) as [ErrorCode, number][]).map(([code, n]) => [n, code]),
);

/**
 * How a failure happened below the backend's own answer. `connect`: the
 * backend could not be reached, or the connection broke before it sent a
 * status, so it never answered this call (routing may try another target).
 */
export type TransportFailure = 'connect';

export interface GatewayErrorOptions {
  readonly cause?: unknown;
  readonly transport?: TransportFailure;
  readonly retryAfterMs?: number;
}

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ErrorCode;
  /** Set by the backend call helpers when the endpoint was never reached (see TransportFailure). */
  readonly transport?: TransportFailure;
  /**
   * When the client may try again (load shed, every endpoint's breaker open):
   * answered as Retry-After (REST, whole seconds) and grpc-retry-pushback-ms (gRPC).
   */
  readonly retryAfterMs?: number;

  constructor(code: ErrorCode, message: string, options?: GatewayErrorOptions) {
    super(message, options);
    this.code = code;
    if (options?.transport !== undefined) this.transport = options.transport;
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }

  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }

  get grpcStatus(): number {
    return GRPC_STATUS[this.code];
  }
}

export function invalidArgument(message: string, cause?: unknown): GatewayError {
  return new GatewayError('INVALID_ARGUMENT', message, { cause });
}

export function notFound(message: string, cause?: unknown): GatewayError {
  return new GatewayError('NOT_FOUND', message, { cause });
}

export function unavailable(message: string, cause?: unknown): GatewayError {
  return new GatewayError('UNAVAILABLE', message, { cause });
}

/** The error code for a gRPC status number; unknown numbers become UNKNOWN. */
export function codeFromGrpcStatus(status: number): ErrorCode {
  return BY_GRPC_STATUS.get(status) ?? 'UNKNOWN';
}

/**
 * The error code for an HTTP status a backend answered with. 5xx other than
 * 501/503/504 are the backend's internal failures.
 */
export function codeFromHttpStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'PERMISSION_DENIED';
    case 404:
      return 'NOT_FOUND';
    case 408:
      return 'DEADLINE_EXCEEDED';
    case 409:
      return 'ABORTED';
    case 413:
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 499:
      return 'CANCELLED';
    case 501:
      return 'UNIMPLEMENTED';
    case 502:
    case 503:
    case 507:
      return 'UNAVAILABLE';
    case 504:
      return 'DEADLINE_EXCEEDED';
    default:
      if (status >= 400 && status < 500) return 'FAILED_PRECONDITION';
      return 'INTERNAL';
  }
}

/**
 * Why work stopped when its abort signal fired: the signal's reason when it
 * is a GatewayError (a shutdown aborts with UNAVAILABLE), else CANCELLED with
 * `message` (the client went away).
 */
export function abortedError(signal: CancelSignal | undefined, message: string, cause?: unknown): GatewayError {
  const reason: unknown = signal?.reason;
  if (reason instanceof GatewayError) return reason;
  return new GatewayError('CANCELLED', message, { cause: cause ?? reason });
}

/** Any thrown value as a GatewayError; unexpected ones become INTERNAL with the original as cause. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new GatewayError('INTERNAL', `internal error: ${message}`, { cause: err });
}
