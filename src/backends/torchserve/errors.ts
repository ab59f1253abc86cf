import { GatewayError, codeFromGrpcStatus, codeFromHttpStatus, type ErrorCode } from '../../core/errors.js';
import { TorchServeError } from '../../protocols/torchserve/error.js';

/**
 * TorchServe's errors as gateway errors, with the backend's own message.
 *
 * REST errors are `{"code": <status>, "type": "<Exception>", "message": "..."}`.
 * The HTTP status gives the code (as for every backend), except:
 * - 507 (out of memory, "Out of resources") is RESOURCE_EXHAUSTED, not a
 *   generic unavailability: retrying elsewhere at once will not help;
 * - 400 InvalidKeyException is TorchServe's token auth refusing the gateway.
 *
 * gRPC: TorchServe answers INTERNAL for every frontend error, whatever it
 * means, so the message is read: "Model not found: x" / "Model version: v does
 * not exist for model: x" are NOT_FOUND, and "... has no worker to serve
 * inference request" (no worker, queue full) is UNAVAILABLE.
 */

const MAX_EXCERPT = 512;

/** A non-2xx REST reply as an error. */
export function restError(status: number, body: Buffer): TorchServeError {
  const parsed = parseErrorBody(body);
  const type = parsed?.type ?? '';
  let code: ErrorCode = status === 507 ? 'RESOURCE_EXHAUSTED' : codeFromHttpStatus(status);
  if (type === 'InvalidKeyException') code = 'UNAUTHENTICATED';
  let message = parsed?.message ?? excerpt(body);
  if (message === '') message = status === 413 ? 'TorchServe refused the request body as too large (HTTP 413)' : `HTTP ${status}`;
  return new TorchServeError(code, message, status, type);
}

function parseErrorBody(body: Buffer): { type?: string; message?: string } | undefined {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8', 0, Math.min(body.length, 64 * 1024)));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { type, message } = parsed as Record<string, unknown>;
    return {
      ...(typeof type === 'string' ? { type } : {}),
      ...(typeof message === 'string' && message !== '' ? { message } : {}),
    };
  } catch {
    return undefined;
  }
}

function excerpt(body: Buffer): string {
  const text = body.toString('utf8', 0, Math.min(body.length, 64 * 1024)).replace(/\s+/g, ' ').trim();
  return text.length > MAX_EXCERPT ? `${text.slice(0, MAX_EXCERPT)}…` : text;
}

const NOT_FOUND_MESSAGE = /Model (version )?not found|does not exist/i;
const NO_WORKER_MESSAGE = /has no worker to serve inference request/i;

/** Reads the meaning of TorchServe's catch-all INTERNAL from its message; other errors pass unchanged. */
export function refineGrpcError<E>(err: E): E | GatewayError {
  if (!(err instanceof GatewayError) || err.code !== 'INTERNAL') return err;
  if (NOT_FOUND_MESSAGE.test(err.message)) return new GatewayError('NOT_FOUND', err.message, { cause: err });
  if (NO_WORKER_MESSAGE.test(err.message)) return new GatewayError('UNAVAILABLE', err.message, { cause: err });
  return err;
}

/** The error a streamed PredictionResponse carries in-band (`status` with a non-zero code), if any. */
export function inBandError(status: { code?: number; message?: string } | undefined): GatewayError | undefined {
  if (status === undefined || status.code === undefined || status.code === 0) return undefined;
  const code = codeFromGrpcStatus(status.code);
  const error = new GatewayError(code, status.message || `TorchServe answered ${code} in its stream`);
  return refineGrpcError(error);
}
