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

/**
 * Reads a request body into one Buffer, refusing it as soon as it passes
 * `limit` bytes (before buffering the rest) and up front when Content-Length
 * already says so.
 */
export function readBody(incoming: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = incoming.headers['content-length'];
  if (declared !== undefined) {
    const size = Number(declared);
    if (!Number.isSafeInteger(size) || size < 0) return Promise.reject(invalidArgument(`invalid Content-Length '${declared}'`));
    if (size > limit) {
      incoming.resume();
      return Promise.reject(new PayloadTooLargeError(limit, size));
    }
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        incoming.resume();
        reject(new PayloadTooLargeError(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
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
