import type { InferRequest, InferResponse, ModelMetadata, V2RestBody } from '../../core/inference.js';
import {
  BINARY_OUTPUTS,
  decodeErrorMessage,
  decodeInferResponse,
  decodeModelMetadata,
  encodeInferRequest,
  parseHeaderLength,
} from '../../protocols/v2/rest-codec.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions } from '../backend.js';
import { HttpEndpoint, header, isOk, replyError, type HttpReply } from '../http-call.js';

const HEADER_LENGTH = 'inference-header-content-length';

/**
 * Triton over KServe v2 REST, through one keep-alive undici Pool per endpoint.
 * Inference always uses the binary tensor extension both ways: it is the
 * fastest form and bit-exact for every datatype.
 */
export class TritonRestBackend implements Backend {
  readonly kind = 'triton' as const;
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
    const body = encodeInferRequest(req, { binaryInputs: true, outputs: BINARY_OUTPUTS });
    const headers: Record<string, string> = { 'content-type': body.contentType };
    if (body.headerLength !== undefined) headers[HEADER_LENGTH] = String(body.headerLength);
    const reply = await this.http.request('POST', modelPath(req.model, req.version, '/infer'), opts, { headers, body });
    if (!isOk(reply.status)) throw tritonError(reply);
    return this.http.decodeReply('inference response', () =>
      decodeInferResponse(reply.body, parseHeaderLength(header(reply, HEADER_LENGTH), reply.body.length)),
    );
  }

  /** Triton speaks v2 REST: the client's body goes as it is, and Triton's answer comes back as it is. */
  async relayV2Rest(model: string, version: string, body: V2RestBody, opts: CallOptions): Promise<V2RestBody> {
    const headers: Record<string, string> = { 'content-type': body.contentType };
    if (body.headerLength !== undefined) headers[HEADER_LENGTH] = String(body.headerLength);
    const send = { headers, body: { chunks: [body.bytes], byteLength: body.bytes.length } };
    const reply = await this.http.request('POST', modelPath(model, version, '/infer'), opts, send);
    if (!isOk(reply.status)) throw tritonError(reply);
    const headerLength = this.http.decodeReply('inference response', () => parseHeaderLength(header(reply, HEADER_LENGTH), reply.body.length));
    return {
      contentType: header(reply, 'content-type') ?? 'application/json',
      ...(headerLength !== undefined ? { headerLength } : {}),
      bytes: reply.body,
    };
  }

  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const reply = await this.http.request('GET', modelPath(model, version, '/ready'), opts);
    if (isOk(reply.status)) return true;
    // Triton answers 400 for a model it knows that is not ready; 404 and the rest are errors.
    if (reply.status === 400) return false;
    throw tritonError(reply);
  }

  async modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    const reply = await this.http.request('GET', modelPath(model, version, ''), opts);
    if (!isOk(reply.status)) throw tritonError(reply);
    return this.http.decodeReply('model metadata', () => decodeModelMetadata(reply.body));
  }

  async serverReady(opts: CallOptions): Promise<boolean> {
    const reply = await this.http.request('GET', '/v2/health/ready', opts);
    return isOk(reply.status);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

/** `/v2/models/{m}[/versions/{v}]{suffix}` with encoded segments. */
function modelPath(model: string, version: string, suffix: string): string {
  const base = `/v2/models/${encodeURIComponent(model)}`;
  return version === '' ? base + suffix : `${base}/versions/${encodeURIComponent(version)}${suffix}`;
}

/** A non-2xx reply: the code its status maps to, with Triton's own message. */
function tritonError(reply: HttpReply) {
  return replyError(reply, decodeErrorMessage);
}
