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
  type ModelStreamInferResponseMessage,
  type ServerReadyRequestMessage,
  type ServerReadyResponseMessage,
} from '../../protocols/v2/grpc-proto.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions } from '../backend.js';
import { GrpcEndpoint, rpcOf, type Rpc } from '../grpc-call.js';
import { GatewayError, type ErrorCode } from '../../core/errors.js';

export interface TritonGrpcOptions extends EndpointOptions {
  /** Largest message sent or received; default 64 MiB. */
  readonly maxMessageBytes?: number;
}

function rpc<Req, Res>(name: string): Rpc<Req, Res> {
  return rpcOf(INFERENCE_SERVICE, 'inference.GRPCInferenceService', name);
}

const MODEL_INFER = rpc<ModelInferRequestMessage, ModelInferResponseMessage>('ModelInfer');
const MODEL_STREAM_INFER = rpc<ModelInferRequestMessage, ModelStreamInferResponseMessage>('ModelStreamInfer');
const MODEL_READY = rpc<ModelReadyRequestMessage, ModelReadyResponseMessage>('ModelReady');
const MODEL_METADATA = rpc<ModelMetadataRequestMessage, ModelMetadataResponseMessage>('ModelMetadata');
const SERVER_READY = rpc<ServerReadyRequestMessage, ServerReadyResponseMessage>('ServerReady');

/** Request parameter: send an empty response flagged final when a decoupled model ends without data. */
const EMPTY_FINAL_PARAMETER = 'triton_enable_empty_final_response';
/** Response parameter: true on the last response of a request. */
const FINAL_PARAMETER = 'triton_final_response';

/**
 * Triton's stream errors carry a message and no status, so the code is read
 * from Triton's own wording (first match wins); anything else is the model
 * failing, INTERNAL, as Triton reports backend errors.
 */
const STREAM_ERROR_CODES: readonly (readonly [RegExp, ErrorCode])[] = [
  [/not at ready state|shutting down|stopped accepting/i, 'UNAVAILABLE'],
  [/unknown model|is not found|no version/i, 'NOT_FOUND'],
  [/doesn't support models with decoupled/i, 'UNIMPLEMENTED'],
  [/Failed to process the request/i, 'INTERNAL'],
  [/\b(inputs?|outputs?|shape|dimensions?|data-?type|byte size|parameters?|batch size|contents)\b/i, 'INVALID_ARGUMENT'],
];

/** How Triton refuses a decoupled model on unary ModelInfer. */
const DECOUPLED_REFUSAL = /doesn't support models with decoupled/i;
/** Bound on the models remembered as decoupled (a config names far fewer). */
const MAX_DECOUPLED_MODELS = 1_024;

function streamError(message: string): GatewayError {
  return new GatewayError(STREAM_ERROR_CODES.find(([pattern]) => pattern.test(message))?.[1] ?? 'INTERNAL', message);
}

/**
 * Triton over KServe v2 gRPC: one channel per endpoint, created once;
 * every call is multiplexed over it, so `maxConnections` does not apply.
 */
export class TritonGrpcBackend implements Backend {
  readonly kind = 'triton';
  readonly protocol = 'grpc';
  readonly endpoint: string;
  private readonly grpc: GrpcEndpoint;
  /** model\0version of the models found decoupled, streamed without a unary try first. */
  private readonly decoupled = new Set<string>();

  constructor(opts: TritonGrpcOptions) {
    this.endpoint = opts.endpoint;
    this.grpc = new GrpcEndpoint(this.kind, opts.endpoint, opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const msg = await this.grpc.call(MODEL_INFER, inferRequestToMessage(req), opts);
    return this.grpc.decodeReply(() => inferResponseFromMessage(msg));
  }

  /**
   * Triton's bidirectional ModelStreamInfer with one request per call: the
   * way to reach decoupled models (0..n responses per request; unary
   * ModelInfer refuses them); any other model answers one unary call. The request
   * asks for Triton's empty final response, so the end is known even when a
   * model sends its final flag without data: a response flagged
   * `triton_final_response` ends the parts (it is the last part when it
   * carries outputs, else only the end); so does the server ending the
   * stream. An in-band `error_message` fails the stream (see streamError).
   */
  async *inferStream(req: InferRequest, opts: CallOptions): AsyncGenerator<InferResponse> {
    // Most models answer once: a unary call is cheaper than a stream per request. A model found decoupled (unary
    // refused) is remembered and streamed from then on.
    const key = `${req.model}\u0000${req.version}`;
    if (!this.decoupled.has(key)) {
      try {
        yield await this.infer(req, opts);
        return;
      } catch (err) {
        if (!(err instanceof GatewayError && DECOUPLED_REFUSAL.test(err.message))) throw err;
        if (this.decoupled.size >= MAX_DECOUPLED_MODELS) this.decoupled.clear();
        this.decoupled.add(key);
      }
    }
    const msg = inferRequestToMessage(req);
    msg.parameters = { ...msg.parameters, [EMPTY_FINAL_PARAMETER]: { bool_param: true } };
    for await (const reply of this.grpc.bidiStream(MODEL_STREAM_INFER, msg, opts)) {
      if (reply.error_message) throw streamError(reply.error_message);
      const response = reply.infer_response ?? {};
      const final = response.parameters?.[FINAL_PARAMETER]?.bool_param === true;
      if (final && (response.outputs?.length ?? 0) === 0) return;
      yield this.grpc.decodeReply(() => inferResponseFromMessage(response));
      if (final) return;
    }
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
