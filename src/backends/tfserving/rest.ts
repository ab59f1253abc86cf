import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import {
  decodeModelMetadataJson,
  decodeModelStatusJson,
  decodePredictResponse,
  encodePredictRequest,
} from '../../protocols/tfserving/rest-codec.js';
import { findSignature, isNumericVersion, signatureToMetadata } from '../../protocols/tfserving/signature.js';
import { decodeErrorMessage } from '../../protocols/v2/rest-codec.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions } from '../backend.js';
import { HttpEndpoint, isOk, jsonBody, replyError, type HttpReply } from '../http-call.js';
import { requestedOutputNames, restFormatFor, signatureFor } from './options.js';

/**
 * Signature metadata is kept this long: TF's JSON names no output datatypes,
 * so every predict needs them, but the latest version (or a label) may move to
 * a model with other outputs.
 */
const SIGNATURE_TTL_MS = 60_000;
/** Cached signatures at most (model x version x signature); the oldest goes first. */
const SIGNATURE_CACHE_MAX = 1_024;
/** A model name no one serves: a server that answers "not found" for it is up. */
const PROBE_MODEL = '__infergate_readiness_probe__';

/**
 * TF Serving over its REST API (the --rest_api_port one), through one
 * keep-alive undici Pool per endpoint. Requests go in the model's configured
 * layout (columnar by default); replies are typed with the signature's output
 * datatypes, fetched from the metadata endpoint and cached.
 */
export class TfServingRestBackend implements Backend {
  readonly kind = 'tfserving' as const;
  readonly protocol = 'rest' as const;
  readonly endpoint: string;
  private readonly http: HttpEndpoint;
  private readonly signatures = new Map<string, { readonly at: number; readonly value: Promise<ModelMetadata> }>();

  constructor(opts: EndpointOptions & { maxMessageBytes?: number }) {
    this.endpoint = opts.endpoint;
    this.http = new HttpEndpoint(this.kind, {
      endpoint: opts.endpoint,
      maxConnections: opts.maxConnections,
      maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    });
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const signature = signatureFor(opts, req);
    const meta = await this.cachedSignature(req.model, req.version, signature, opts);
    // TF REST has no output filter: it answers every output, and the ones asked for are picked here.
    const wanted = requestedOutputNames(req);
    const missing = wanted?.filter((name) => !meta.outputs.some((o) => o.name === name));
    if (missing !== undefined && missing.length > 0) {
      throw invalidArgument(
        `model '${req.model}' signature '${signature}' has no output ${missing.map((n) => `'${n}'`).join(', ')} ` +
          `(its outputs: ${meta.outputs.map((o) => o.name).join(', ')})`,
      );
    }
    checkInputTypes(req, meta);
    const body = encodePredictRequest(req.inputs, signature, restFormatFor(opts));
    const reply = await this.http.request('POST', modelPath(req.model, req.version, ':predict'), opts, jsonBody(body.text));
    if (!isOk(reply.status)) throw tfError(reply);
    const outputs = this.http.decodeReply('predict reply', () => decodePredictResponse(reply.body, meta.outputs, body.format));
    return {
      model: req.model,
      // TF's REST reply names no version: the one asked for, else the one the metadata was served by.
      version: isNumericVersion(req.version) ? req.version : (meta.versions[0] ?? ''),
      ...(req.id !== undefined ? { id: req.id } : {}),
      outputs: wanted === undefined ? outputs : wanted.flatMap((name) => outputs.filter((o) => o.name === name)),
    };
  }

  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const reply = await this.http.request('GET', modelPath(model, version, ''), opts);
    if (!isOk(reply.status)) throw tfError(reply);
    return this.http.decodeReply('model status', () => decodeModelStatusJson(reply.body));
  }

  modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    return this.fetchSignature(model, version, signatureFor(opts), opts);
  }

  /** TF has no health endpoint: any answer from its model status route, "not found" included, means it is up. */
  async serverReady(opts: CallOptions): Promise<boolean> {
    const reply = await this.http.request('GET', modelPath(PROBE_MODEL, '', ''), opts);
    return isOk(reply.status) || reply.status === 404;
  }

  close(): Promise<void> {
    return this.http.close();
  }

  private async fetchSignature(model: string, version: string, signature: string, opts: CallOptions): Promise<ModelMetadata> {
    const reply = await this.http.request('GET', modelPath(model, version, '/metadata'), opts);
    if (!isOk(reply.status)) throw tfError(reply);
    const decoded = this.http.decodeReply('model metadata', () => decodeModelMetadataJson(reply.body));
    const versions = decoded.version !== undefined ? [decoded.version] : isNumericVersion(version) ? [version] : [];
    // Outside decodeReply: a missing signature is the caller's FAILED_PRECONDITION, not a malformed reply.
    const sig = findSignature(decoded.signatures, signature, model);
    return this.http.decodeReply('model metadata', () => signatureToMetadata(sig, signature, model, versions));
  }

  /** Concurrent misses share one fetch; failures are not kept. */
  private cachedSignature(model: string, version: string, signature: string, opts: CallOptions): Promise<ModelMetadata> {
    const key = `${model}\u0000${version}\u0000${signature}`;
    const now = Date.now();
    const hit = this.signatures.get(key);
    if (hit !== undefined && now - hit.at < SIGNATURE_TTL_MS) return hit.value;
    const value = this.fetchSignature(model, version, signature, opts);
    this.signatures.delete(key);
    if (this.signatures.size >= SIGNATURE_CACHE_MAX) {
      const oldest = this.signatures.keys().next().value;
      if (oldest !== undefined) this.signatures.delete(oldest);
    }
    this.signatures.set(key, { at: now, value });
    value.catch(() => {
      if (this.signatures.get(key)?.value === value) this.signatures.delete(key);
    });
    return value;
  }
}

/**
 * TF's JSON carries no datatypes, so TF would read an INT32 tensor's values as
 * the FP32 it expects without a word; the signature says what each input must
 * be, and a mismatch is refused here as TF's gRPC API would refuse it.
 */
function checkInputTypes(req: InferRequest, meta: ModelMetadata): void {
  for (const t of req.inputs) {
    const expected = meta.inputs.find((i) => i.name === t.name)?.datatype;
    if (expected !== undefined && expected !== t.datatype) {
      throw invalidArgument(`input '${t.name}' is ${t.datatype} but model '${req.model}' expects ${expected}`);
    }
  }
}

/** `/v1/models/{m}[/versions/{n}|/labels/{l}]{suffix}`: digits are a version, any other version string a label. */
function modelPath(model: string, version: string, suffix: string): string {
  const base = `/v1/models/${encodeURIComponent(model)}`;
  if (version === '') return base + suffix;
  const kind = isNumericVersion(version) ? 'versions' : 'labels';
  return `${base}/${kind}/${encodeURIComponent(version)}${suffix}`;
}

/** A non-2xx reply: TF's `{"error": "..."}` message with the code its status maps to. */
function tfError(reply: HttpReply): GatewayError {
  return replyError(reply, decodeErrorMessage);
}
