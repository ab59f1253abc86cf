import { PassThrough, Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { abortedError, GatewayError, codeFromHttpStatus, unavailable } from '../core/errors.js';
import type { BackendKind, CallOptions } from './backend.js';
import type { CancelSignal } from '../core/cancel.js';

/**
 * One HTTP backend endpoint: a keep-alive undici Pool plus what every REST
 * adapter needs around a request: the deadline and the caller's cancellation
 * as one abort signal, a reply body read whole under a size limit (so the
 * connection is reused), and transport failures mapped to gateway codes.
 * Adapters build paths and bodies; this owns the wire.
 */

/** setTimeout fires at once beyond this delay (2^31-1 ms), so longer deadlines are capped to it. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * Bodies up to this size are sent as one Buffer: one copy of the tensors, then one socket write. undici streams a
 * body given as chunks far slower (a 1 MiB tensor costs ~4x the CPU), so only larger ones stream, without a copy.
 */
const CONCAT_UP_TO = 16 * 1024 * 1024;

export interface HttpReply {
  readonly status: number;
  readonly headers: Dispatcher.ResponseData['headers'];
  readonly body: Buffer;
}

/** A request body as chunks (the tensors' own Buffers, not copied) and its total size. */
export interface HttpBody {
  readonly chunks: readonly Buffer[];
  readonly byteLength: number;
}

export interface HttpSend {
  readonly headers: Record<string, string>;
  readonly body: HttpBody;
}

/** A reply whose body streams: see HttpEndpoint.stream(). */
export interface HttpStreamReply {
  readonly status: number;
  readonly headers: Dispatcher.ResponseData['headers'];
  /** The body as it arrives, one Buffer per piece undici delivers (never merged). */
  readonly chunks: AsyncIterable<Buffer>;
}

export interface HttpEndpointOptions {
  readonly endpoint: string;
  readonly maxConnections: number;
  readonly maxMessageBytes: number;
}

export class HttpEndpoint {
  readonly endpoint: string;
  private readonly pool: Pool;
  private readonly maxMessageBytes: number;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly kind: BackendKind,
    opts: HttpEndpointOptions,
  ) {
    this.endpoint = opts.endpoint;
    this.maxMessageBytes = opts.maxMessageBytes;
    this.pool = new Pool(`http://${opts.endpoint}`, { connections: opts.maxConnections, pipelining: 1 });
  }

  /**
   * One request with the deadline and cancellation applied; always reads the whole reply body so the connection is
   * reused. Runs on undici's dispatch() with a handler of our own (ReplyCollector): no AbortController, no body
   * stream and no async iteration per call, which Pool.request would cost on the hot path.
   */
  request(method: 'GET' | 'POST', path: string, opts: CallOptions, send?: HttpSend): Promise<HttpReply> {
    if (this.closing !== undefined) return Promise.reject(unavailable(`backend ${this.kind} ${this.endpoint} unreachable: the adapter is closed`));
    const headers: Record<string, string> = send !== undefined ? { ...send.headers } : {};
    if (opts.requestId !== undefined) headers['x-request-id'] = opts.requestId;
    if (opts.traceparent !== undefined) headers.traceparent = opts.traceparent;
    if (send !== undefined) headers['content-length'] = String(send.body.byteLength);
    return new Promise<HttpReply>((resolve, reject) => {
      const collector = new ReplyCollector(this.kind, this.endpoint, this.maxMessageBytes, opts, resolve, reject);
      if (collector.settled) return;
      try {
        this.pool.dispatch({ path, method, headers, body: send === undefined ? null : requestBody(send.body) }, collector);
      } catch (err) {
        collector.fail(err);
      }
    });
  }

  /**
   * Like request(), for answers streamed in parts (chunked transfer encoding):
   * resolves at the response head, then `chunks` yields the body as it
   * arrives. Pieces are never merged (an object-mode sink keeps each write
   * apart), so parts the server sent apart arrive apart unless one spans TCP
   * reads. The deadline and the caller's cancellation cover the whole exchange;
   * more than maxMessageBytes in total fails it. Iterate `chunks` to its end, or
   * break out of it, which ends the call.
   */
  async stream(method: 'GET' | 'POST', path: string, opts: CallOptions, send?: HttpSend): Promise<HttpStreamReply> {
    if (this.closing !== undefined) throw unavailable(`backend ${this.kind} ${this.endpoint} unreachable: the adapter is closed`);
    const abort = new CallAbort(`backend ${this.kind} ${this.endpoint}`, opts);
    const fail = (err: unknown): GatewayError => abort.reason() ?? transportError(this.kind, this.endpoint, err);
    const headers: Record<string, string> = { ...send?.headers };
    if (opts.requestId !== undefined) headers['x-request-id'] = opts.requestId;
    if (opts.traceparent !== undefined) headers.traceparent = opts.traceparent;
    if (send !== undefined) headers['content-length'] = String(send.body.byteLength);
    let sink: PassThrough | undefined;
    const head = new Promise<Omit<HttpStreamReply, 'chunks'>>((resolve, reject) => {
      this.pool
        .stream(
          { path, method, headers, body: send === undefined ? null : requestBody(send.body), signal: abort.signal },
          ({ statusCode, headers: replyHeaders }) => {
            sink = new PassThrough({ objectMode: true, highWaterMark: 16 });
            resolve({ status: statusCode, headers: replyHeaders });
            return sink;
          },
        )
        .catch((err: unknown) => {
          // Before the head: the call failed. After it: the body's reader sees the error.
          if (sink === undefined) reject(fail(err));
          else sink.destroy(fail(err));
        })
        .finally(() => abort.dispose());
    });
    const reply = await head;
    return { ...reply, chunks: this.readChunks(sink!, fail) };
  }

  private async *readChunks(body: PassThrough, fail: (err: unknown) => GatewayError): AsyncGenerator<Buffer> {
    let size = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.maxMessageBytes) throw this.tooLarge(`more than ${this.maxMessageBytes} bytes`);
        yield chunk;
      }
    } catch (err) {
      throw err instanceof GatewayError ? err : fail(err);
    } finally {
      body.destroy(); // ends the call when the reader stops early; nothing to do after the end
    }
  }

  /** A reply the codec cannot read is the backend's fault, not the client's: INTERNAL, not INVALID_ARGUMENT. */
  decodeReply<T>(what: string, decode: () => T): T {
    try {
      return decode();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new GatewayError('INTERNAL', `backend ${this.kind} ${this.endpoint} sent an invalid ${what}: ${message}`, { cause: err });
    }
  }

  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }

  private tooLarge(size: string): GatewayError {
    return tooLargeError(this.kind, this.endpoint, size, this.maxMessageBytes);
  }
}

function tooLargeError(kind: BackendKind, endpoint: string, size: string, limit: number): GatewayError {
  return new GatewayError('RESOURCE_EXHAUSTED', `backend ${kind} ${endpoint} replied with ${size}, over the limit of ${limit} bytes`);
}

/**
 * One request's undici dispatch handler: collects the reply body under the
 * size limit and settles the call's promise once, with the reply, the
 * deadline (DEADLINE_EXCEEDED), the caller's cancellation (CANCELLED, or the
 * caller's own reason) or a transport error. A call aborted while still
 * queued in the pool settles at once and is aborted when undici starts it.
 */
class ReplyCollector implements Dispatcher.DispatchHandler {
  settled = false;
  private controller: Dispatcher.DispatchController | undefined;
  private abortReason: GatewayError | undefined;
  private status = 0;
  private headers: IncomingHttpHeaders = {};
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly callerSignal: CancelSignal | undefined;
  private readonly onCallerAbort = (): void => {
    // The caller's reason when it gives one (a shutdown answers UNAVAILABLE), else CANCELLED.
    this.abort(abortedError(this.callerSignal, `call to backend ${this.kind} ${this.endpoint} was cancelled`));
  };

  constructor(
    private readonly kind: BackendKind,
    private readonly endpoint: string,
    private readonly maxBytes: number,
    opts: CallOptions,
    private readonly resolve: (reply: HttpReply) => void,
    private readonly reject: (err: GatewayError) => void,
  ) {
    const budget = opts.deadline - Date.now();
    this.callerSignal = opts.signal;
    if (opts.signal?.aborted === true) this.onCallerAbort();
    else if (budget <= 0) this.expire(budget);
    else {
      opts.signal?.addEventListener('abort', this.onCallerAbort, { once: true });
      if (Number.isFinite(budget)) this.timer = setTimeout(() => this.expire(budget), Math.min(budget, MAX_TIMER_MS));
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortReason !== undefined) controller.abort(this.abortReason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx heads come before the real one; only the last counts.
    this.status = statusCode;
    this.headers = headers;
    const declared = Number(headers['content-length']);
    if (declared > this.maxBytes) this.abort(tooLargeError(this.kind, this.endpoint, `${declared} bytes`, this.maxBytes));
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      this.abort(tooLargeError(this.kind, this.endpoint, `more than ${this.maxBytes} bytes`, this.maxBytes));
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.finish();
    const chunks = this.chunks;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.size);
    this.resolve({ status: this.status, headers: this.headers, body });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.fail(err);
  }

  /** Settles with undici's error (or the abort's own reason). */
  fail(err: unknown): void {
    if (this.settled) return;
    this.finish();
    this.reject(this.abortReason ?? transportError(this.kind, this.endpoint, err));
  }

  private expire(budget: number): void {
    this.abort(new GatewayError('DEADLINE_EXCEEDED', `backend ${this.kind} ${this.endpoint} did not answer within ${Math.max(0, Math.round(budget))} ms`));
  }

  private abort(reason: GatewayError): void {
    if (this.settled) return;
    this.abortReason = reason;
    this.finish();
    this.reject(reason);
    // Not started yet: onRequestStart aborts it. Started: the connection is dropped (undici does not reuse it).
    this.controller?.abort(reason);
  }

  private finish(): void {
    this.settled = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.callerSignal?.removeEventListener('abort', this.onCallerAbort);
  }
}

/**
 * The abort signal of one call: fires at the deadline (DEADLINE_EXCEEDED) or
 * when the caller's signal aborts (CANCELLED), and remembers which.
 */
class CallAbort {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly callerSignal: CancelSignal | undefined;
  private readonly onCallerAbort = (): void => {
    // The caller's reason when it gives one (a shutdown answers UNAVAILABLE), else CANCELLED.
    this.controller.abort(abortedError(this.callerSignal, `call to ${this.target} was cancelled`));
  };

  /** `target` names the backend in messages ("backend triton host:port"). */
  constructor(
    private readonly target: string,
    opts: CallOptions,
  ) {
    const budget = opts.deadline - Date.now();
    const expire = (): void => {
      this.controller.abort(
        new GatewayError('DEADLINE_EXCEEDED', `${target} did not answer within ${Math.max(0, Math.round(budget))} ms`),
      );
    };
    this.callerSignal = opts.signal;
    if (opts.signal?.aborted) this.onCallerAbort();
    else if (budget <= 0) expire();
    else {
      opts.signal?.addEventListener('abort', this.onCallerAbort, { once: true });
      if (Number.isFinite(budget)) this.timer = setTimeout(expire, Math.min(budget, MAX_TIMER_MS));
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The GatewayError the call was aborted with, if it was. */
  reason(): GatewayError | undefined {
    const reason: unknown = this.controller.signal.reason;
    return this.controller.signal.aborted && reason instanceof GatewayError ? reason : undefined;
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.callerSignal?.removeEventListener('abort', this.onCallerAbort);
  }
}

function requestBody(body: HttpBody): Buffer | Readable {
  const { chunks, byteLength } = body;
  if (chunks.length === 1) return chunks[0]!;
  if (byteLength <= CONCAT_UP_TO) return Buffer.concat(chunks as Buffer[], byteLength);
  return Readable.from(chunks, { objectMode: false });
}

/** A JSON text as a request body. */
export function jsonBody(text: string): HttpSend {
  const data = Buffer.from(text, 'utf8');
  return { headers: { 'content-type': 'application/json' }, body: { chunks: [data], byteLength: data.length } };
}

export function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

export function header(res: { headers: Dispatcher.ResponseData['headers'] }, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A non-2xx reply: the code its status maps to, with the backend's own message (read by `message`). */
export function replyError(reply: HttpReply, message: (body: Buffer, status: number) => string): GatewayError {
  return new GatewayError(codeFromHttpStatus(reply.status), message(reply.body, reply.status));
}

/** Errors below HTTP (connect, DNS, reset, closed pool) mean the endpoint cannot be reached. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** undici's complaints about how it was called are our bugs, not the backend's. */
const USAGE_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']);

function transportError(kind: BackendKind, endpoint: string, err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
  const message = err instanceof Error && err.message !== '' ? err.message : (code ?? String(err));
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    return new GatewayError('DEADLINE_EXCEEDED', `backend ${kind} ${endpoint} did not answer in time: ${message}`, { cause: err });
  }
  if (code !== undefined && USAGE_CODES.has(code)) {
    return new GatewayError('INTERNAL', `request to backend ${kind} ${endpoint} failed: ${message}`, { cause: err });
  }
  // Marked as a connection failure: the backend never answered, so routing may try another target.
  return new GatewayError('UNAVAILABLE', `backend ${kind} ${endpoint} unreachable: ${message}`, { cause: err, transport: 'connect' });
}
