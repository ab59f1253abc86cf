import * as grpc from '@grpc/grpc-js';
import { GatewayError, codeFromGrpcStatus, unavailable } from '../../core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import { inferRequestToMessage, inferResponseFromMessage, modelMetadataFromMessage } from '../../protocols/v2/grpc-codec.js';
import {
  INFERENCE_SERVICE,
  InferenceClient,
  type ModelInferRequestMessage,
  type ModelInferResponseMessage,
  type ModelMetadataRequestMessage,
  type ModelMetadataResponseMessage,
  type ModelReadyRequestMessage,
  type ModelReadyResponseMessage,
  type ServerReadyRequestMessage,
  type ServerReadyResponseMessage,
} from '../../protocols/v2/grpc-proto.js';
import type { Backend, CallOptions, EndpointOptions } from '../backend.js';

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface TritonGrpcOptions extends EndpointOptions {
  /** Largest message sent or received; default 64 MiB. */
  readonly maxMessageBytes?: number;
}

/** One rpc of inference.GRPCInferenceService with its message types, resolved once. */
interface Rpc<Req, Res> {
  readonly path: string;
  readonly serialize: (request: Req) => Buffer;
  readonly deserialize: (bytes: Buffer) => Res;
}

function rpc<Req, Res>(name: string): Rpc<Req, Res> {
  const method = INFERENCE_SERVICE[name];
  if (!method) throw new Error(`inference.GRPCInferenceService has no rpc ${name}`);
  return { path: method.path, serialize: method.requestSerialize, deserialize: method.responseDeserialize };
}

const MODEL_INFER = rpc<ModelInferRequestMessage, ModelInferResponseMessage>('ModelInfer');
const MODEL_READY = rpc<ModelReadyRequestMessage, ModelReadyResponseMessage>('ModelReady');
const MODEL_METADATA = rpc<ModelMetadataRequestMessage, ModelMetadataResponseMessage>('ModelMetadata');
const SERVER_READY = rpc<ServerReadyRequestMessage, ServerReadyResponseMessage>('ServerReady');

/**
 * Triton over KServe v2 gRPC: one channel per endpoint, created once;
 * every call is multiplexed over it, so `maxConnections` does not apply.
 *
 * Calls fail fast (gRPC's default, waitForReady false): a dead endpoint
 * answers UNAVAILABLE at once instead of holding the call until its deadline,
 * which lets the caller try another endpoint.
 */
export class TritonGrpcBackend implements Backend {
  readonly kind = 'triton';
  readonly protocol = 'grpc';
  readonly endpoint: string;
  private readonly client: grpc.Client;
  private closed = false;

  constructor(opts: TritonGrpcOptions) {
    this.endpoint = opts.endpoint;
    const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.client = new InferenceClient(opts.endpoint, grpc.credentials.createInsecure(), {
      // Pings only while calls are in flight: Triton (like gRPC core) sends
      // GOAWAY to clients that ping idle connections too often.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 0,
      // A restarted backend is retried within seconds, not gRPC's default two minutes.
      'grpc.max_reconnect_backoff_ms': 10_000,
      'grpc.max_send_message_length': maxMessageBytes,
      'grpc.max_receive_message_length': maxMessageBytes,
    });
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const msg = await this.call(MODEL_INFER, inferRequestToMessage(req), opts);
    return this.decodeResponse(() => inferResponseFromMessage(msg));
  }

  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const msg = await this.call(MODEL_READY, { name: model, version }, opts);
    return msg.ready === true;
  }

  async modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    const msg = await this.call(MODEL_METADATA, { name: model, version }, opts);
    return this.decodeResponse(() => modelMetadataFromMessage(msg));
  }

  async serverReady(opts: CallOptions): Promise<boolean> {
    const msg = await this.call(SERVER_READY, {}, opts);
    return msg.ready === true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  private call<Req, Res>(method: Rpc<Req, Res>, request: Req, opts: CallOptions): Promise<Res> {
    if (this.closed) return Promise.reject(unavailable(`backend triton ${this.endpoint} is closed`));
    if (opts.signal?.aborted) return Promise.reject(this.cancelled());
    const metadata = new grpc.Metadata();
    if (opts.requestId) metadata.set('x-request-id', opts.requestId);
    return new Promise<Res>((resolve, reject) => {
      let sawHeaders = false;
      const onAbort = (): void => call.cancel();
      const call = this.client.makeUnaryRequest(
        method.path,
        method.serialize,
        method.deserialize,
        request,
        metadata,
        { deadline: new Date(opts.deadline) },
        (err, value) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(this.toGatewayError(err, sawHeaders, opts.signal?.aborted === true));
          else if (value === undefined) reject(new GatewayError('INTERNAL', `backend triton ${this.endpoint} sent no reply`));
          else resolve(value);
        },
      );
      call.on('metadata', () => {
        sawHeaders = true;
      });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private toGatewayError(err: grpc.ServiceError, sawHeaders: boolean, aborted: boolean): GatewayError {
    if (aborted && err.code === grpc.status.CANCELLED) return this.cancelled(err);
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      return new GatewayError('DEADLINE_EXCEEDED', `backend ${this.endpoint} did not answer within the deadline`, {
        cause: err,
      });
    }
    if (err.code === grpc.status.UNAVAILABLE && !fromServer(err, sawHeaders)) {
      return unavailable(`backend triton ${this.endpoint} unreachable: ${err.details}`, err);
    }
    const code = codeFromGrpcStatus(err.code);
    return new GatewayError(code, err.details || `backend triton ${this.endpoint} answered ${code}`, { cause: err });
  }

  private cancelled(cause?: unknown): GatewayError {
    return new GatewayError('CANCELLED', `call to backend triton ${this.endpoint} was cancelled`, { cause });
  }

  /** A reply the codec rejects is the backend's fault, not the client's, so it is not passed on as INVALID_ARGUMENT. */
  private decodeResponse<T>(decode: () => T): T {
    try {
      return decode();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new GatewayError('INTERNAL', `backend triton ${this.endpoint} sent a malformed reply: ${message}`, {
        cause: err,
      });
    }
  }
}

/**
 * Whether the server sent this status: a server's status comes after its
 * response headers, or in a trailers-only response that carries content-type.
 * grpc-js's own failures (no connection, connection dropped) have neither.
 */
function fromServer(err: grpc.ServiceError, sawHeaders: boolean): boolean {
  return sawHeaders || err.metadata.get('content-type').length > 0;
}
