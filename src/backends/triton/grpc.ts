import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import { inferRequestToMessage, inferResponseFromMessage, modelMetadataFromMessage } from '../../protocols/v2/grpc-codec.js';
import {
  INFERENCE_SERVICE,
  type ModelInferRequestMessage,
  type ModelInferResponseMessage,
  type ModelMetadataRequestMessage,
  type ModelMetadataResponseMessage,
  type ModelReadyRequestMessage,
  type ModelReadyResponseMessage,
  type ServerReadyRequestMessage,
  type ServerReadyResponseMessage,
} from '../../protocols/v2/grpc-proto.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions } from '../backend.js';
import { GrpcEndpoint, rpcOf, type Rpc } from '../grpc-call.js';


export interface TritonGrpcOptions extends EndpointOptions {
  /** Largest message sent or received; default 64 MiB. */
  readonly maxMessageBytes?: number;
}

function rpc<Req, Res>(name: string): Rpc<Req, Res> {
  return rpcOf(INFERENCE_SERVICE, 'inference.GRPCInferenceService', name);
}

const MODEL_INFER = rpc<ModelInferRequestMessage, ModelInferResponseMessage>('ModelInfer');
const MODEL_READY = rpc<ModelReadyRequestMessage, ModelReadyResponseMessage>('ModelReady');
const MODEL_METADATA = rpc<ModelMetadataRequestMessage, ModelMetadataResponseMessage>('ModelMetadata');
const SERVER_READY = rpc<ServerReadyRequestMessage, ServerReadyResponseMessage>('ServerReady');

/**
 * Triton over KServe v2 gRPC: one channel per endpoint, created once;
 * every call is multiplexed over it, so `maxConnections` does not apply.
 */
export class TritonGrpcBackend implements Backend {
  readonly kind = 'triton';
  readonly protocol = 'grpc';
  readonly endpoint: string;
  private readonly grpc: GrpcEndpoint;

  constructor(opts: TritonGrpcOptions) {
    this.endpoint = opts.endpoint;
    this.grpc = new GrpcEndpoint(this.kind, opts.endpoint, opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const msg = await this.grpc.call(MODEL_INFER, inferRequestToMessage(req), opts);
    return this.grpc.decodeReply(() => inferResponseFromMessage(msg));
  }

  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const msg = await this.grpc.call(MODEL_READY, { name: model, version }, opts);
    return msg.ready === true;
  }

  async modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    const msg = await this.grpc.call(MODEL_METADATA, { name: model, version }, opts);
    return this.grpc.decodeReply(() => modelMetadataFromMessage(msg));
  }

  async serverReady(opts: CallOptions): Promise<boolean> {
    const msg = await this.grpc.call(SERVER_READY, {}, opts);
    return msg.ready === true;
  }

  async close(): Promise<void> {
    this.grpc.close();
  }
}
