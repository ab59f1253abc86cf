import type { InferRequest, InferResponse, ModelMetadata, V2RestBody } from '../core/inference.js';
import type { CancelSignal } from '../core/cancel.js';

export const BACKEND_KINDS = ['triton', 'torchserve', 'tfserving'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export const BACKEND_PROTOCOLS = ['rest', 'grpc'] as const;
export type BackendProtocol = (typeof BACKEND_PROTOCOLS)[number];

/** What a caller passes down with every backend call. */
export interface CallOptions {
  /** Absolute deadline (ms since the epoch, as Date.now()); the call fails with DEADLINE_EXCEEDED past it. */
  readonly deadline: number;
  /** Aborts the call when the client goes away. */
  readonly signal?: CancelSignal;
  /** The gateway's request id, sent on to the backend for correlation. */
  readonly requestId?: string;
  /** W3C traceparent of this call (the request's trace, a span of its own), sent as a header or gRPC metadata. */
  readonly traceparent?: string;
  /** How this model is called on its backend, where the server kind needs more than a name (from the model's config). */
  readonly model?: ModelOptions;
}

/**
 * Per-model settings of one server kind, validated from the config's model
 * entry. An adapter reads only its own kind's entry and uses defaults when it
 * is absent.
 */
export interface ModelOptions {
  readonly tfserving?: TfServingModelOptions;
  readonly torchserve?: TorchServeModelOptions;
}

export interface TfServingModelOptions {
  /** The SignatureDef to call; TF Serving's default is serving_default. */
  readonly signatureName: string;
  /** REST request layout: columnar ("inputs") or row ("instances"). */
  readonly restFormat: 'columnar' | 'row';
}

export interface TorchServeModelOptions {
  /**
   * How the request's tensors become TorchServe's body (REST) / input map (gRPC):
   * `json` sends one JSON object of input name -> nested values (the keys renamed
   * by `inputKeys`); `raw` sends the bytes of the single input as they are
   * (an image, say).
   */
  readonly request: 'json' | 'raw';
  /**
   * How the answer becomes tensors: `json` parses it and makes each key of an
   * object (or the whole value) a tensor, typed where it is a numeric array;
   * `bytes` returns the body as one BYTES output.
   */
  readonly response: 'json' | 'bytes';
  /** Input tensor name -> JSON key / input-map key on the wire (default: the tensor name). */
  readonly inputKeys: Readonly<Record<string, string>>;
  /** Name of the output when the answer is not a JSON object (a list, a scalar, or bytes). */
  readonly outputName: string;
  /** Datatype for each named JSON output (default: INT64 for all-integer arrays, FP32 for numbers, BOOL, else BYTES). */
  readonly outputTypes: Readonly<Record<string, string>>;
}

/**
 * One model server endpoint, spoken to over one protocol. Each adapter
 * (backends/<server>/<protocol>.ts) implements this and owns its connection
 * pool (an HTTP pool or a gRPC channel), created once and reused.
 *
 * Every method throws GatewayError: UNAVAILABLE when the endpoint cannot be
 * reached, DEADLINE_EXCEEDED past the deadline, and the backend's own error
 * (with its message) mapped to the matching code otherwise.
 */
export interface Backend {
  readonly kind: BackendKind;
  readonly protocol: BackendProtocol;
  /** host:port this adapter talks to. */
  readonly endpoint: string;

  /** `req.model` / `req.version` are the backend's own model name and version. */
  infer(req: InferRequest, opts: CallOptions): Promise<InferResponse>;
  /**
   * For servers that stream an answer in parts (TorchServe's StreamPredictions
   * and chunked replies): each part as it arrives. Adapters without it are
   * called through infer(), as one part.
   */
  inferStream?(req: InferRequest, opts: CallOptions): AsyncIterable<InferResponse>;
  /**
   * For servers that speak KServe v2 REST themselves (Triton's REST adapter):
   * one inference whose body goes out exactly as the client sent it, and whose
   * successful reply comes back exactly as the server wrote it (see
   * V2RestBody). A non-2xx reply throws as infer() does.
   */
  relayV2Rest?(model: string, version: string, body: V2RestBody, opts: CallOptions): Promise<V2RestBody>;
  /** True when the model (version) is loaded and ready; false when found but not ready. */
  modelReady(model: string, version: string, opts: CallOptions): Promise<boolean>;
  modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata>;
  serverReady(opts: CallOptions): Promise<boolean>;
  /** Closes pools and channels; calls after close fail with UNAVAILABLE. */
  close(): Promise<void>;
}

/** Largest backend message an adapter accepts when not told otherwise (the gateway passes server.max_body_bytes). */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** What an adapter needs to connect to one endpoint. */
export interface EndpointOptions {
  /** host:port */
  readonly endpoint: string;
  /** Most connections kept open to the endpoint (REST pools; gRPC multiplexes over one). */
  readonly maxConnections: number;
}
