// TorchServe's REST front end on bare node:http: the inference API (ping, predictions) plus the read-only part
// of the management API (list and describe models), both on one port. Frontend JSON (ping, errors, describe)
// is pretty-printed with a trailing newline as TorchServe's Gson writer does; prediction bodies are the
// handler's bytes untouched.
import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { readLimitedBody } from '../common/http.js';
import { TorchServeError, describeModel, listModels, predict, type HandlerReply, type InferHook } from './models.js';

/** TorchServe's default max_request_size; a bigger body gets 413 like Netty's HttpObjectAggregator gives. */
export const MAX_REQUEST_BYTES = 6_553_500;
/** Pause between the chunks of a streamed answer, so each token arrives as its own chunk. */
const STREAM_CHUNK_DELAY_MS = 15;

const INVALID_KEY = 'Token Authorization failed. Token either incorrect, expired, or not provided correctly';
const notFound = (): TorchServeError =>
  new TorchServeError(404, 'ResourceNotFoundException', 'Requested resource is not found, please refer to API document.');
const methodNotAllowed = (): TorchServeError =>
  new TorchServeError(405, 'MethodNotAllowedException', 'Requested method is not allowed, please refer to API document.');

/** Raised while reading an oversized body; answered with an empty 413 rather than TorchServe's error JSON. */
class BodyTooLarge extends Error {}

export interface RestOptions {
  /** When set, every request needs `Authorization: Bearer <token>`, /ping included (as in TorchServe). */
  token?: string;
  onInfer: InferHook;
}

export function createRestServer(opts: RestOptions): Server {
  return http.createServer((req, res) => {
    // TorchServe echoes the client's x-request-id, or makes one up, on every response.
    const requestId = headerValue(req.headers['x-request-id']) || randomUUID();
    handle(req, res, requestId, opts).catch((err: unknown) => sendError(res, requestId, err));
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, requestId: string, opts: RestOptions): Promise<void> {
  // The whole body is read before anything else, as Netty aggregates it, so error replies never race it.
  const body = await readBody(req);
  const segments = pathSegments(req.url ?? '/');
  const route = segments[1];
  if (route === 'predictions') await opts.onInfer({ headers: flattenHeaders(req.headers), body });
  if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
    throw new TorchServeError(400, 'InvalidKeyException', INVALID_KEY);
  }

  if (route === 'ping') return sendJson(res, requestId, 200, { status: 'Healthy' }); // any method, like TorchServe
  if (route === 'predictions') {
    if (segments.length < 3) throw notFound();
    if (req.method !== 'POST') throw methodNotAllowed();
    const contentType = req.headers['content-type'];
    const reply = predict(segments[2] ?? '', segments[3] || undefined, {
      input: await handlerInputs(body, contentType),
      ...(contentType ? { contentType } : {}),
    });
    return reply.parts ? sendStream(res, requestId, reply) : send(res, requestId, 200, reply.body, contentTypeHeader(reply));
  }
  if (route === 'models') {
    // Management API (port 8081 in real TorchServe): only the read-only calls are modelled.
    if (req.method !== 'GET') throw methodNotAllowed();
    if (segments.length === 2) return sendJson(res, requestId, 200, listModels());
    if (segments.length <= 4) return sendJson(res, requestId, 200, describeModel(segments[2] ?? '', segments[3] || undefined));
  }
  throw notFound();
}

/** Path segments as TorchServe sees them: split on "/" after URL-decoding, so [0] is the empty root. */
function pathSegments(url: string): string[] {
  const path = url.split('?', 1)[0] ?? '/';
  return path.split('/').map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s; // a malformed escape just fails to match any model
    }
  });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return readLimitedBody(req, MAX_REQUEST_BYTES, () => new BodyTooLarge());
}

/**
 * TorchServe hands a form (multipart or urlencoded) to the handler as one named input per field; any other
 * body, whatever its Content-Type, is the single input "body".
 */
async function handlerInputs(body: Buffer, contentType: string | undefined): Promise<Map<string, Buffer>> {
  const mime = (contentType ?? '').split(';', 1)[0]?.trim().toLowerCase();
  if (mime !== 'multipart/form-data' && mime !== 'application/x-www-form-urlencoded') return new Map([['body', body]]);
  let form: FormData;
  try {
    // The WHATWG Response parser handles both form encodings, boundaries and all.
    form = await new Response(body, { headers: { 'content-type': contentType ?? '' } }).formData();
  } catch (err) {
    throw new TorchServeError(400, 'BadRequestException', `malformed form body: ${(err as Error).message}`);
  }
  const input = new Map<string, Buffer>();
  for (const [name, value] of form) {
    input.set(name, typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(await value.arrayBuffer()));
  }
  return input;
}

const headerValue = (v: string | string[] | undefined): string => (Array.isArray(v) ? v.join(', ') : v ?? '');

function flattenHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = headerValue(value);
  return out;
}

/** Handlers set their own Content-Type; when they set none, TorchServe adds none either. */
const contentTypeHeader = (reply: HandlerReply): OutgoingHttpHeaders => (reply.contentType ? { 'Content-Type': reply.contentType } : {});

/** Headers TorchServe puts on every response. */
function commonHeaders(requestId: string): OutgoingHttpHeaders {
  return {
    'x-request-id': requestId,
    Pragma: 'no-cache',
    'Cache-Control': 'no-cache; no-store, must-revalidate, private',
    Expires: 'Thu, 01 Jan 1970 00:00:00 UTC',
  };
}

function send(res: ServerResponse, requestId: string, status: number, body: Buffer | string, headers: OutgoingHttpHeaders = {}): void {
  res.writeHead(status, {
    ...commonHeaders(requestId),
    ...headers,
    'Content-Length': Buffer.byteLength(body),
    // TorchServe closes the connection after every error response; a client pool must cope with that.
    ...(status >= 400 ? { Connection: 'close' } : {}),
  });
  res.end(body);
}

/** Gson's pretty printer: two-space indent, and HTML-sensitive characters escaped as \uXXXX. */
export function gsonPretty(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[<>&='\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function sendJson(res: ServerResponse, requestId: string, status: number, value: unknown): void {
  send(res, requestId, status, `${gsonPretty(value)}\n`, { 'Content-Type': 'application/json' });
}

/** HTTP/1.1 chunked encoding, one chunk per part, as TorchServe streams intermediate handler responses. */
async function sendStream(res: ServerResponse, requestId: string, reply: HandlerReply): Promise<void> {
  res.writeHead(200, { ...commonHeaders(requestId), ...contentTypeHeader(reply), 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();
  const parts = reply.parts ?? [];
  for (const [i, part] of parts.entries()) {
    if (res.destroyed) return; // the client went away
    if (i > 0) await delay(STREAM_CHUNK_DELAY_MS);
    res.write(part);
  }
  res.end();
}

function sendError(res: ServerResponse, requestId: string, err: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (err instanceof BodyTooLarge) return send(res, requestId, 413, '');
  if (err instanceof TorchServeError) {
    return sendJson(res, requestId, err.status, { code: err.status, type: err.type, message: err.message });
  }
  // A bug of ours, not of the request: still answer rather than leave the client hanging.
  const message = err instanceof Error ? err.message : String(err);
  sendJson(res, requestId, 500, { code: 500, type: 'InternalServerException', message });
}
