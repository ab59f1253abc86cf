import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import {
  answerResponse,
  DEFAULT_TORCHSERVE_OPTIONS,
  restRequestBody,
} from '../../protocols/torchserve/mapping.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions, type TorchServeModelOptions } from '../backend.js';
import { HttpEndpoint, header, isOk, type HttpSend } from '../http-call.js';
import type { TorchServeError } from '../../protocols/torchserve/error.js';
import { restError } from './errors.js';
import { parseDescription, parsePing, synthesizedMetadata } from './describe.js';


/**
 * TorchServe over its REST inference API, through one keep-alive undici Pool
 * per endpoint: POST /predictions/{m}[/{v}] with the body the model's
 * TorchServeModelOptions describe (protocols/torchserve/mapping.ts), GET /ping.
 *
 * Readiness and versions come from the model description, GET /models/{m}[/{v}|/all].
 * Real TorchServe serves that on its management port (8081), not the inference
 * port (8080) this adapter talks to; where the endpoint has no such route
 * (404 ResourceNotFoundException) the adapter falls back to /ping for
 * readiness and to the asked version for metadata, so health checks never mark
 * a model unready for want of a management API.
 */
export class TorchServeRestBackend implements Backend {
  readonly kind = 'torchserve' as const;
  readonly protocol = 'rest' as const;
  readonly endpoint: string;
  private readonly http: HttpEndpoint;

  constructor(opts: EndpointOptions & { maxMessageBytes?: number }) {
    this.endpoint = opts.endpoint;
    this.http = new HttpEndpoint(this.kind, {
      endpoint: opts.endpoint,
      maxConnections: opts.maxConnections,
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    });
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const options = modelOptions(opts);
    const reply = await this.http.request('POST', predictionsPath(req), opts, requestSend(req, options));
    if (!isOk(reply.status)) throw restError(reply.status, reply.body);
    return answerResponse(req, reply.body, header(reply, 'content-type'), options);
  }

  /**
   * A chunked reply (a streaming handler's intermediate responses) gives one
   * response per chunk as it arrives; any other reply is one response.
   */
  async *inferStream(req: InferRequest, opts: CallOptions): AsyncGenerator<InferResponse> {
    const options = modelOptions(opts);
    const reply = await this.http.stream('POST', predictionsPath(req), opts, requestSend(req, options));
    const contentType = header(reply, 'content-type');
    const chunked = /\bchunked\b/i.test(header(reply, 'transfer-encoding') ?? '');
    if (isOk(reply.status) && chunked) {
      for await (const chunk of reply.chunks) yield answerResponse(req, chunk, contentType, options);
      return;
    }
    const body = await collect(reply.chunks);
    if (!isOk(reply.status)) throw restError(reply.status, body);
    yield answerResponse(req, body, contentType, options);
  }

  /** True when a worker of the model (version) is READY; false when it has none. */
  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const descriptions = await this.describe(model, version, opts);
    if (descriptions === undefined) return this.serverReady(opts);
    return descriptions.some((d) => d.workers.some((w) => w.status === 'READY'));
  }

  /** TorchServe knows no tensor metadata, so inputs and outputs are empty; the versions are the registered ones. */
  async modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    const descriptions = await this.describe(model, version === '' ? 'all' : version, opts);
    if (descriptions === undefined) return synthesizedMetadata(model, version);
    return { ...synthesizedMetadata(model, ''), versions: descriptions.map((d) => d.modelVersion) };
  }

  async serverReady(opts: CallOptions): Promise<boolean> {
    const reply = await this.http.request('GET', '/ping', opts);
    return isOk(reply.status) && parsePing(reply.body);
  }

  close(): Promise<void> {
    return this.http.close();
  }

  /** The model description, or undefined when this endpoint serves no management routes. */
  private async describe(model: string, version: string, opts: CallOptions) {
    const path = `/models/${encodeURIComponent(model)}${version === '' ? '' : `/${encodeURIComponent(version)}`}`;
    const reply = await this.http.request('GET', path, opts);
    if (!isOk(reply.status)) {
      const error = restError(reply.status, reply.body);
      if (isMissingRoute(error)) return undefined;
      throw error;
    }
    return this.http.decodeReply('model description', () => parseDescription(reply.body));
  }
}

function modelOptions(opts: CallOptions): TorchServeModelOptions {
  return opts.model?.torchserve ?? DEFAULT_TORCHSERVE_OPTIONS;
}

function requestSend(req: InferRequest, options: TorchServeModelOptions): HttpSend {
  const { chunks, byteLength, contentType } = restRequestBody(req, options);
  return { headers: { 'content-type': contentType }, body: { chunks, byteLength } };
}

/** `/predictions/{m}[/{v}]` with encoded segments. */
function predictionsPath(req: InferRequest): string {
  const base = `/predictions/${encodeURIComponent(req.model)}`;
  return req.version === '' ? base : `${base}/${encodeURIComponent(req.version)}`;
}

/** TorchServe's answer to a path it has no route for (as opposed to ModelNotFoundException). */
function isMissingRoute(error: TorchServeError): boolean {
  return error.status === 404 && error.type === 'ResourceNotFoundException';
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
