import type { InferRequest, InferResponse, ModelMetadata } from '../core/inference.js';

export const BACKEND_KINDS = ['triton'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export const BACKEND_PROTOCOLS = ['rest', 'grpc'] as const;
export type BackendProtocol = (typeof BACKEND_PROTOCOLS)[number];

/** What a caller passes down with every backend call. */
export interface CallOptions {
  /** Absolute deadline (ms since the epoch, as Date.now()); the call fails with DEADLINE_EXCEEDED past it. */
  readonly deadline: number;
  /** Aborts the call when the client goes away. */
  readonly signal?: AbortSignal;
  /** The gateway's request id, sent on to the backend for correlation. */
  readonly requestId?: string;
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
  /** True when the model (version) is loaded and ready; false when found but not ready. */
  modelReady(model: string, version: string, opts: CallOptions): Promise<boolean>;
  modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata>;
  serverReady(opts: CallOptions): Promise<boolean>;
  /** Closes pools and channels; calls after close fail with UNAVAILABLE. */
  close(): Promise<void>;
}

/** What an adapter needs to connect to one endpoint. */
export interface EndpointOptions {
  /** host:port */
  readonly endpoint: string;
  /** Most connections kept open to the endpoint (REST pools; gRPC multiplexes over one). */
  readonly maxConnections: number;
}
