import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import {
  TORCHSERVE_SERVICE,
  TORCHSERVE_SERVICE_NAME,
  type EmptyMessage,
  type PredictionResponseMessage,
  type PredictionsRequestMessage,
  type TorchServeHealthResponseMessage,
} from '../../protocols/torchserve/grpc-proto.js';
import { answerResponse, DEFAULT_TORCHSERVE_OPTIONS, grpcRequestInput } from '../../protocols/torchserve/mapping.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions, type TorchServeModelOptions } from '../backend.js';
import { GrpcEndpoint, rpcOf } from '../grpc-call.js';
import { parsePing, synthesizedMetadata } from './describe.js';
import { inBandError, refineGrpcError } from './errors.js';


const PING = rpcOf<EmptyMessage, TorchServeHealthResponseMessage>(TORCHSERVE_SERVICE, TORCHSERVE_SERVICE_NAME, 'Ping');
const PREDICTIONS = rpcOf<PredictionsRequestMessage, PredictionResponseMessage>(
  TORCHSERVE_SERVICE,
  TORCHSERVE_SERVICE_NAME,
  'Predictions',
);
const STREAM_PREDICTIONS = rpcOf<PredictionsRequestMessage, PredictionResponseMessage>(
  TORCHSERVE_SERVICE,
  TORCHSERVE_SERVICE_NAME,
  'StreamPredictions',
);

/**
 * TorchServe over its gRPC inference API (InferenceAPIsService): Predictions,
 * StreamPredictions (one response per streamed message) and Ping, over one
 * channel per endpoint. The request's input map and the reading of
 * `prediction` follow the model's TorchServeModelOptions
 * (protocols/torchserve/mapping.ts); gRPC replies carry no Content-Type.
 *
 * The inference API has no rpc that describes a model (that is the management
 * API, ManagementAPIsService on another port), so modelReady reports the
 * server's health (Ping) and modelMetadata the asked version without a call:
 * a model without workers or unknown to the server shows in its predictions
 * (UNAVAILABLE / NOT_FOUND), not in its readiness.
 */
export class TorchServeGrpcBackend implements Backend {
  readonly kind = 'torchserve' as const;
  readonly protocol = 'grpc' as const;
  readonly endpoint: string;
  private readonly grpc: GrpcEndpoint;

  constructor(opts: EndpointOptions & { maxMessageBytes?: number }) {
    this.endpoint = opts.endpoint;
    this.grpc = new GrpcEndpoint(this.kind, opts.endpoint, opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const options = modelOptions(opts);
    const message = await this.grpc.call(PREDICTIONS, predictionsRequest(req, options), opts).catch((err: unknown) => {
      throw refineGrpcError(err);
    });
    return answerResponse(req, message.prediction ?? Buffer.alloc(0), undefined, options);
  }

  /** StreamPredictions: one response per message, as the handler sends its parts; an in-band `status` fails the stream. */
  async *inferStream(req: InferRequest, opts: CallOptions): AsyncGenerator<InferResponse> {
    const options = modelOptions(opts);
    try {
      for await (const message of this.grpc.serverStream(STREAM_PREDICTIONS, predictionsRequest(req, options), opts)) {
        const error = inBandError(message.status);
        if (error !== undefined) throw error;
        yield answerResponse(req, message.prediction ?? Buffer.alloc(0), undefined, options);
      }
    } catch (err) {
      throw refineGrpcError(err);
    }
  }

  /** The server's health: the inference API cannot tell one model's readiness (see the class comment). */
  modelReady(_model: string, _version: string, opts: CallOptions): Promise<boolean> {
    return this.serverReady(opts);
  }

  /** TorchServe has no tensor metadata (inputs and outputs are empty), and its gRPC inference API no versions list. */
  async modelMetadata(model: string, version: string): Promise<ModelMetadata> {
    return synthesizedMetadata(model, version);
  }

  /** Ping answers OK with `{"status": "Healthy"}` or "Unhealthy" in its health string. */
  async serverReady(opts: CallOptions): Promise<boolean> {
    const reply = await this.grpc.call(PING, {}, opts);
    return parsePing(reply.health ?? '');
  }

  async close(): Promise<void> {
    this.grpc.close();
  }
}

function modelOptions(opts: CallOptions): TorchServeModelOptions {
  return opts.model?.torchserve ?? DEFAULT_TORCHSERVE_OPTIONS;
}

function predictionsRequest(req: InferRequest, options: TorchServeModelOptions): PredictionsRequestMessage {
  return { model_name: req.model, model_version: req.version, input: grpcRequestInput(req, options) };
}
