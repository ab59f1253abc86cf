import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { GatewayError, codeFromHttpStatus, unavailable } from '../../core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import {
  BINARY_OUTPUTS,
  decodeErrorMessage,
  decodeInferResponse,
  decodeModelMetadata,
  encodeInferRequest,
  parseHeaderLength,
  type EncodedBody,
} from '../../protocols/v2/rest-codec.js';
import type { Backend, CallOptions, EndpointOptions } from '../backend.js';

const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Bodies up to this size are sent as one Buffer (one write); larger ones stream their chunks without copying tensors. */
const CONCAT_UP_TO = 64 * 1024;
/** setTimeout fires at once beyond this delay (2^31-1 ms), so longer deadlines are capped to it. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const HEADER_LENGTH = 'inference-header-content-length';

interface Reply {
  readonly status: number;
  readonly headers: Dispatcher.ResponseData['headers'];
  readonly body: Buffer;
}

interface Send {
  readonly headers: Record<string, string>;
  readonly body: EncodedBody;
}

/**
 * Triton over KServe v2 REST, through one keep-alive undici Pool per endpoint.
 * Inference always uses the binary tensor extension both ways: it is the
 * fastest form and bit-exact for every datatype.
 */
export class TritonRestBackend implements Backend {
  readonly kind = 'triton' as const;
  readonly protocol = 'rest' as const;
  readonly endpoint: string;
  private readonly pool: Pool;
  private readonly maxMessageBytes: number;
  private closing: Promise<void> | undefined;

  constructor(opts: EndpointOptions & { maxMessageBytes?: number }) {
    this.endpoint = opts.endpoint;
    this.maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.pool = new Pool(`http://${opts.endpoint}`, { connections: opts.maxConnections, pipelining: 1 });
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const body = encodeInferRequest(req, { binaryInputs: true, outputs: BINARY_OUTPUTS });
    const headers: Record<string, string> = { 'content-type': body.contentType };
    if (body.headerLength !== undefined) headers[HEADER_LENGTH] = String(body.headerLength);
    const reply = await this.call('POST', modelPath(req.model, req.version, '/infer'), opts, { headers, body });
    if (!isOk(reply.status)) throw replyError(reply);
    return this.decodeReply('inference response', () =>
      decodeInferResponse(reply.body, parseHeaderLength(header(reply, HEADER_LENGTH), reply.body.length)),
    );
  }

  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const reply = await this.call('GET', modelPath(model, version, '/ready'), opts);
    if (isOk(reply.status)) return true;
    // Triton answers 400 for a model it knows that is not ready; 404 and the rest are errors.
    if (reply.status === 400) return false;
    throw replyError(reply);
  }

  async modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    const reply = await this.call('GET', modelPath(model, version, ''), opts);
    if (!isOk(reply.status)) throw replyError(reply);
    return this.decodeReply('model metadata', () => decodeModelMetadata(reply.body));
  }

  async serverReady(opts: CallOptions): Promise<boolean> {
    const reply = await this.call('GET', '/v2/health/ready', opts);
    return isOk(reply.status);
  }

  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }

  /** One request with the deadline and cancellation applied; always reads the whole reply body so the connection is reused. */
  private async call(method: 'GET' | 'POST', path: string, opts: CallOptions, send?: Send): Promise<Reply> {
    if (this.closing !== undefined) throw unavailable(`backend triton ${this.endpoint} unreachable: the adapter is closed`);
    const abort = new CallAbort(this.endpoint, opts);
    try {
      const headers: Record<string, string> = { ...send?.headers };
      if (opts.requestId !== undefined) headers['x-request-id'] = opts.requestId;
      if (send !== undefined) headers['content-length'] = String(send.body.byteLength);
      const res = await this.pool.request({
        path,
        method,
        headers,
        body: send === undefined ? null : requestBody(send.body),
        signal: abort.signal,
      });
      const body = await this.readBody(res);
      return { status: res.statusCode, headers: res.headers, body };
    } catch (err) {
      throw abort.reason() ?? transportError(this.endpoint, err);
    } finally {
      abort.dispose();
    }
  }

  private async readBody(res: Dispatcher.ResponseData): Promise<Buffer> {
    const declared = Number(header(res, 'content-length'));
    if (declared > this.maxMessageBytes) {
      await res.body.dump().catch(() => undefined);
      throw this.tooLarge(`${declared} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.maxMessageBytes) {
        res.body.destroy();
        throw this.tooLarge(`more than ${this.maxMessageBytes} bytes`);
      }
      chunks.push(chunk);
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  }

  private tooLarge(size: string): GatewayError {
    return new GatewayError(
      'RESOURCE_EXHAUSTED',
      `backend triton ${this.endpoint} replied with ${size}, over the limit of ${this.maxMessageBytes} bytes`,
    );
  }

  /** A reply the codec cannot read is the backend's fault, not the client's: INTERNAL, not INVALID_ARGUMENT. */
  private decodeReply<T>(what: string, decode: () => T): T {
    try {
      return decode();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new GatewayError('INTERNAL', `backend triton ${this.endpoint} sent an invalid ${what}: ${message}`, { cause: err });
    }
  }
}

/**
 * The abort signal of one call: fires at the deadline (DEADLINE_EXCEEDED) or
 * when the caller's signal aborts (CANCELLED), and remembers which.
 */
class CallAbort {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly callerSignal: AbortSignal | undefined;
  private readonly onCallerAbort = (): void => {
    this.controller.abort(new GatewayError('CANCELLED', `call to backend triton ${this.endpoint} was cancelled`));
  };

  constructor(
    private readonly endpoint: string,
    opts: CallOptions,
  ) {
    const budget = opts.deadline - Date.now();
    const expire = (): void => {
      this.controller.abort(
        new GatewayError('DEADLINE_EXCEEDED', `backend triton ${endpoint} did not answer within ${Math.max(0, Math.round(budget))} ms`),
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

function requestBody(body: EncodedBody): Buffer | Readable {
  const { chunks, byteLength } = body;
  if (chunks.length === 1) return chunks[0]!;
  if (byteLength <= CONCAT_UP_TO) return Buffer.concat(chunks as Buffer[], byteLength);
  return Readable.from(chunks, { objectMode: false });
}

/** `/v2/models/{m}[/versions/{v}]{suffix}` with encoded segments. */
function modelPath(model: string, version: string, suffix: string): string {
  const base = `/v2/models/${encodeURIComponent(model)}`;
  return version === '' ? base + suffix : `${base}/versions/${encodeURIComponent(version)}${suffix}`;
}

function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

function header(res: { headers: Dispatcher.ResponseData['headers'] }, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A non-2xx reply: the code its status maps to, with the backend's own message. */
function replyError(reply: Reply): GatewayError {
  return new GatewayError(codeFromHttpStatus(reply.status), decodeErrorMessage(reply.body, reply.status));
}

/** Errors below HTTP (connect, DNS, reset, closed pool) mean the endpoint cannot be reached. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** undici's complaints about how it was called are our bugs, not the backend's. */
const USAGE_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']);

function transportError(endpoint: string, err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
  const message = err instanceof Error && err.message !== '' ? err.message : (code ?? String(err));
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    return new GatewayError('DEADLINE_EXCEEDED', `backend triton ${endpoint} did not answer in time: ${message}`, { cause: err });
  }
  if (code !== undefined && USAGE_CODES.has(code)) {
    return new GatewayError('INTERNAL', `request to backend triton ${endpoint} failed: ${message}`, { cause: err });
  }
  return new GatewayError('UNAVAILABLE', `backend triton ${endpoint} unreachable: ${message}`, { cause: err });
}
