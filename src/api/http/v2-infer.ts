import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { V2RestBody } from '../../core/inference.js';
import { invalidArgument, toGatewayError, type GatewayError } from '../../core/errors.js';
import type { CacheMode, CacheOutcome } from '../../cache/response-cache.js';
import type { InferenceTimer } from '../../observability/inference-metrics.js';
import { logRequestFailure } from '../../observability/request-log.js';
import { TRACEPARENT_HEADER, traceFrom, type TraceContext } from '../../observability/trace-context.js';
import { decodeInferRequest, encodeError, encodeInferResponse, parseHeaderLength } from '../../protocols/v2/rest-codec.js';
import type { InferenceService, RequestContext } from '../../routing/inference-service.js';
import type { RequestTicket } from '../admission.js';
import { decodePathSegment, refusalHeaders } from '../auth/http-guard.js';
import { REQUEST_ID_HEADER, requestIdFrom } from '../request-id.js';
import { ATTEMPTS_HEADER, CACHE_HEADER, cacheModeOf, TARGET_HEADER, VARIANT_HEADER } from '../served.js';
import { readBody } from './body.js';
import { clientDeadlineOf, type HttpApiOptions } from './context.js';
import type { CancelSignal } from '../../core/cancel.js';

const PREFIX = '/v2/models/';
const HEADER_LENGTH = 'inference-header-content-length';

/**
 * The hot path of the REST API, KServe v2 inference
 * (`POST /v2/models/{m}[/versions/{v}]/infer`), served on node:http itself
 * rather than through Hono: no web Request, Response or Headers objects, no
 * router, one context object per request. Every other REST route (and a path
 * this does not recognise) goes to the Hono app, so the listener returns
 * false for it.
 *
 * It does what the Hono app's middleware and route would: access control
 * (auth, scopes, rate limits) before anything is read, the request id, the
 * in-flight limit and cancellation, the request metrics, and the same
 * response headers and `{"error": ...}` answers.
 */
export function createV2InferListener(service: InferenceService, opts: HttpApiOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const path = v2InferPath(req.url);
    if (path === undefined) return false;
    serve(service, opts, req, res, path).catch((err: unknown) => {
      // serve() answers every failure itself; this is a bug of ours: logged, and the connection dropped rather than
      // the process brought down by an unhandled rejection.
      opts.logger.error({ err, method: 'POST', path: path.raw }, 'the inference route failed to answer');
      res.destroy();
    });
    return true;
  };
}

interface InferPath {
  readonly model: string;
  readonly version: string;
  /** The path as the client sent it (logs). */
  readonly raw: string;
}

/**
 * The model and version of a v2 inference URL, or undefined for any other
 * path. Segments are percent-decoded as route parameters are (a malformed
 * escape stays as it is); '.' and '..' are refused later, with a 400.
 */
export function v2InferPath(url: string | undefined): InferPath | undefined {
  if (url === undefined || !url.startsWith(PREFIX)) return undefined;
  let end = url.length;
  const q = url.indexOf('?');
  if (q >= 0) end = q;
  const hash = url.indexOf('#');
  if (hash >= 0 && hash < end) end = hash;
  const raw = end === url.length ? url : url.slice(0, end);
  if (!raw.endsWith('/infer')) return undefined;
  const middle = raw.slice(PREFIX.length, raw.length - '/infer'.length);
  const slash = middle.indexOf('/');
  if (slash < 0) return middle === '' ? undefined : { model: decodePathSegment(middle), version: '', raw };
  // {m}/versions/{v}
  const rest = middle.slice(slash + 1);
  if (!rest.startsWith('versions/')) return undefined;
  const version = rest.slice('versions/'.length);
  const model = middle.slice(0, slash);
  if (model === '' || version === '' || version.includes('/')) return undefined;
  return { model: decodePathSegment(model), version: decodePathSegment(version), raw };
}

async function serve(service: InferenceService, opts: HttpApiOptions, req: IncomingMessage, res: ServerResponse, path: InferPath): Promise<void> {
  const headers = req.headers;
  const requestId = requestIdFrom(single(headers[REQUEST_ID_HEADER]));
  const ctx = new HttpInferContext(headers, requestId);
  try {
    // Credentials, scopes and rate limits first of all: a refused request is never admitted nor read.
    if (opts.access !== undefined) {
      try {
        await opts.access.admit({ kind: 'model', model: path.model, infer: true }, (name) => single(headers[name]));
      } catch (err) {
        const error = toGatewayError(err);
        logRequestFailure(opts.logger, { requestId, method: 'POST', path: path.raw }, error);
        writeError(res, error, refusalHeaders(error, requestId));
        return;
      }
    }
    if (isDotSegment(path.model) || isDotSegment(path.version)) {
      throw invalidArgument("invalid path: '.' and '..' segments are not allowed (a model name cannot be '.' or '..')");
    }
    const admission = opts.admission;
    if (admission !== undefined) {
      // Before the body is read: a refused request costs no memory.
      const ticket = admission.admit();
      ctx.ticket = ticket;
      res.once('close', () => {
        if (!res.writableFinished) ticket.cancel();
        ticket.end();
      });
    }
    // Timed from here, as on every surface: refusals (credentials, limits, the in-flight limit) have their own counters.
    ctx.timer = opts.metrics?.start();
    const target = service.resolve(path.model, path.version, ctx.timer);
    // Before the body is read: the deadline runs from the request's arrival, and a bad timeout header is reported first.
    ctx.start(opts.requestTimeoutMs);
    const body = await readBody(req, opts.maxBodyBytes);
    const headerLength = parseHeaderLength(single(headers[HEADER_LENGTH]), body.length);
    const relayed = service.relay({ model: path.model, version: path.version, body: relayBody(headers, headerLength, body) }, ctx, target);
    if (relayed !== undefined) {
      const reply = await relayed;
      writeAnswer(res, ctx, opts, reply.contentType, reply.headerLength, [reply.bytes], reply.bytes.length);
      return;
    }
    const { request, outputEncoding } = decodeInferRequest(body, headerLength, path.model, path.version);
    const response = await service.infer(request, ctx, target);
    const encoded = encodeInferResponse(response, outputEncoding);
    writeAnswer(res, ctx, opts, encoded.contentType, encoded.headerLength, encoded.chunks, encoded.byteLength);
  } catch (err) {
    const error = toGatewayError(err);
    ctx.timer?.end(error);
    logRequestFailure(opts.logger, { requestId, trace_id: ctx.trace.traceId, method: 'POST', path: path.raw }, error);
    if (!res.headersSent && !res.destroyed) writeError(res, error, ctx.answerHeaders(opts));
  }
}

/** A 200 answer: the gateway's headers, the body's type and length; the request is counted as served first. */
function writeAnswer(
  res: ServerResponse,
  ctx: HttpInferContext,
  opts: HttpApiOptions,
  contentType: string,
  headerLength: number | undefined,
  chunks: readonly Uint8Array[],
  byteLength: number,
): void {
  const out = ctx.answerHeaders(opts);
  out['content-type'] = contentType;
  if (headerLength !== undefined) out[HEADER_LENGTH] = String(headerLength);
  out['content-length'] = byteLength;
  ctx.timer?.end();
  res.writeHead(200, out);
  writeChunks(res, chunks, byteLength);
}

/** Bodies up to this size go out as one Buffer; larger ones as their chunks (the tensors' own Buffers, not copied). */
const CONCAT_UP_TO = 64 * 1024;

function writeChunks(res: ServerResponse, chunks: readonly Uint8Array[], byteLength: number): void {
  if (chunks.length === 1) {
    res.end(chunks[0]);
  } else if (byteLength <= CONCAT_UP_TO) {
    res.end(Buffer.concat(chunks, byteLength));
  } else {
    // One writev for the head and every chunk.
    res.cork();
    for (const chunk of chunks) res.write(chunk);
    res.end();
  }
}

/** The client's body for relaying, with its content type (or the one its form implies). */
function relayBody(headers: IncomingHttpHeaders, headerLength: number | undefined, bytes: Buffer): V2RestBody {
  const contentType = headers['content-type'] ?? (headerLength !== undefined ? 'application/octet-stream' : 'application/json');
  return headerLength !== undefined ? { contentType, headerLength, bytes } : { contentType, bytes };
}

function isDotSegment(segment: string): boolean {
  return segment === '.' || segment === '..';
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** A v2 error answer, `{"error": "..."}`, with Retry-After when the error says when to try again. */
function writeError(res: ServerResponse, error: GatewayError, headers: OutgoingHttpHeaders): void {
  const body = Buffer.from(encodeError(error.message), 'utf8');
  headers['content-type'] = 'application/json';
  headers['content-length'] = body.length;
  if (error.retryAfterMs !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
  res.writeHead(error.httpStatus, headers);
  res.end(body);
}

/**
 * One v2 inference's RequestContext: a single object whose hooks are methods
 * (no closures per request), remembering what the response headers say.
 */
class HttpInferContext implements RequestContext {
  deadline = Infinity;
  clientDeadline: number | undefined;
  readonly cacheMode: CacheMode | undefined;
  ticket: RequestTicket | undefined;
  timer: InferenceTimer | undefined;
  private served: { target: string; attempts: number } | undefined;
  private variant: string | undefined;
  private cache: CacheOutcome | undefined;
  private traceContext: TraceContext | undefined;

  constructor(
    private readonly headers: IncomingHttpHeaders,
    readonly requestId: string,
  ) {
    this.cacheMode = cacheModeOf(single(headers['cache-control']));
  }

  /** The deadline: the client's x-infergate-timeout-ms, capped by server.request_timeout_ms, from now. */
  start(requestTimeoutMs: number): void {
    const now = Date.now();
    this.clientDeadline = clientDeadlineOf(this.headers['x-infergate-timeout-ms'], now);
    this.deadline = Math.min(this.clientDeadline ?? Infinity, now + requestTimeoutMs);
  }

  get signal(): CancelSignal | undefined {
    return this.ticket?.signal;
  }

  get trace(): TraceContext {
    this.traceContext ??= traceFrom(single(this.headers[TRACEPARENT_HEADER]));
    return this.traceContext;
  }

  /** A field, not a method: routing may call it detached (`const header = ctx.header`). */
  readonly header = (name: string): string | undefined => single(this.headers[name]);

  onRoute(model: string): void {
    this.timer?.onRoute(model);
  }

  onServed(target: string, attempts: number): void {
    this.served = { target, attempts };
    this.timer?.onServed(target);
  }

  onVariant(experiment: string, arm: string): void {
    this.variant = arm;
    this.timer?.onVariant(experiment, arm);
  }

  onCache(outcome: CacheOutcome): void {
    this.cache = outcome;
  }

  /** The headers every answer carries: request id, where it was served, the arm, the cache outcome. */
  answerHeaders(opts: HttpApiOptions): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = { [REQUEST_ID_HEADER]: this.requestId };
    const served = this.served;
    if (served !== undefined) {
      out[TARGET_HEADER] = served.target;
      out[ATTEMPTS_HEADER] = String(served.attempts);
    }
    if (this.variant !== undefined) out[VARIANT_HEADER] = this.variant;
    if (this.cache !== undefined) out[CACHE_HEADER] = this.cache;
    // While draining, each answer closes its connection, so keep-alive clients reconnect elsewhere.
    if (opts.admission?.draining === true) out.connection = 'close';
    return out;
  }
}
