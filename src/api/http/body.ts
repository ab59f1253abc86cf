import type { IncomingMessage } from 'node:http';
import { GatewayError, invalidArgument } from '../../core/errors.js';

/** A body over the configured limit: HTTP 413 rather than the 429 RESOURCE_EXHAUSTED maps to by default. */
export class PayloadTooLargeError extends GatewayError {
  constructor(limit: number, size?: number) {
    super(
      'RESOURCE_EXHAUSTED',
      `request body${size !== undefined ? ` of ${size} bytes` : ''} exceeds the limit of ${limit} bytes (server.max_body_bytes)`,
    );
  }

  override get httpStatus(): number {
    return 413;
  }
}

export interface ReadBodyOptions {
  /**
   * Spare bytes left in front of the body (the result is `reserve` bytes, then
   * the body), so a caller can frame the body in place: 4 bytes make it a
   * one-element BYTES tensor without a second copy. With a Content-Length the
   * body is copied straight into one buffer of the final size as it arrives.
   */
  readonly reserve?: number;
}

/**
 * Reads a request body into one Buffer, refusing it as soon as it passes
 * `limit` bytes (before buffering the rest) and up front when Content-Length
 * already says so.
 */
export function readBody(incoming: IncomingMessage, limit: number, options: ReadBodyOptions = {}): Promise<Buffer> {
  const reserve = options.reserve ?? 0;
  const declared = incoming.headers['content-length'];
  let declaredSize: number | undefined;
  if (declared !== undefined) {
    const size = Number(declared);
    if (!Number.isSafeInteger(size) || size < 0) return Promise.reject(invalidArgument(`invalid Content-Length '${declared}'`));
    if (size > limit) {
      incoming.resume();
      return Promise.reject(new PayloadTooLargeError(limit, size));
    }
    declaredSize = size;
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // With spare bytes and a known size, chunks go straight into the final buffer.
    const target = reserve > 0 && declaredSize !== undefined ? Buffer.allocUnsafe(reserve + declaredSize) : undefined;
    let copied = 0; // body bytes already in target
    const onData = (chunk: Buffer): void => {
      if (size + chunk.length > limit) {
        cleanup();
        incoming.resume();
        reject(new PayloadTooLargeError(limit));
        return;
      }
      if (target !== undefined && chunks.length === 0 && reserve + copied + chunk.length <= target.length) {
        copied += chunk.copy(target, reserve + copied);
      } else {
        chunks.push(chunk);
      }
      size += chunk.length;
    };
    const onEnd = (): void => {
      cleanup();
      if (target !== undefined && chunks.length === 0 && reserve + copied === target.length) resolve(target);
      else if (reserve > 0) resolve(withReserve(reserve, target?.subarray(reserve, reserve + copied), chunks, size));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new GatewayError('CANCELLED', `client aborted the request body: ${err.message}`, { cause: err }));
    };
    const onAborted = (): void => onError(new Error('connection closed'));
    const cleanup = (): void => {
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('error', onError);
      incoming.off('aborted', onAborted);
    };
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('error', onError);
    incoming.on('aborted', onAborted);
  });
}

/**
 * The body with `reserve` spare bytes in front, built from what is already
 * in place (`head`) and the remaining chunks: when there was no Content-Length,
 * or the body did not match it.
 */
function withReserve(reserve: number, head: Buffer | undefined, chunks: readonly Buffer[], size: number): Buffer {
  const out = Buffer.allocUnsafe(reserve + size);
  let off = reserve;
  if (head !== undefined) off += head.copy(out, off);
  for (const chunk of chunks) off += chunk.copy(out, off);
  return out;
}

/** A JSON body: INVALID_ARGUMENT ("malformed JSON: ...") when it does not parse. */
export function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw invalidArgument(`malformed JSON: ${(err as Error).message}`);
  }
}

/** A JSON body that must be an object: INVALID_ARGUMENT when it does not parse, or with `notAnObject` when it is anything else. */
export function parseJsonObjectBody(body: Buffer, notAnObject: string): Record<string, unknown> {
  const parsed = parseJsonBody(body);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalidArgument(notAnObject);
  return parsed as Record<string, unknown>;
}
