// HTTP plumbing the references share.
import { Buffer } from 'node:buffer';
import http from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * Reads a whole request body. Past maxBytes it keeps draining but drops the bytes, then rejects with
 * tooLarge(size), so the server can still answer on a clean keep-alive connection. Rejects if the client
 * goes away before the body ends.
 */
export function readLimitedBody(req: IncomingMessage, maxBytes: number, tooLarge: (size: number) => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) chunks.push(chunk);
    });
    req.on('end', () => {
      done = true;
      if (size > maxBytes) reject(tooLarge(size));
      else resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
    req.on('close', () => done || reject(new Error('client closed the request')));
  });
}

/** A failure of the HTTP layer itself (routing, framing, body parsing), answered with its own status. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * An HTTP server that reads each request's whole body before routing it (by path, query string dropped), so even
 * an error reply leaves the keep-alive connection clean; whatever route throws is answered by onError.
 */
export function createBufferedServer(
  readBody: (req: IncomingMessage) => Promise<Buffer>,
  route: (req: IncomingMessage, res: ServerResponse, body: Buffer, path: string) => Promise<void>,
  onError: (res: ServerResponse, err: unknown) => void,
): Server {
  return http.createServer((req, res) => {
    (async () => {
      const body = await readBody(req);
      const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
      await route(req, res, body, path);
    })().catch((err: unknown) => onError(res, err));
  });
}
