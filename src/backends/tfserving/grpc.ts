import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { InferRequest, InferResponse, ModelMetadata } from '../../core/inference.js';
import type { Tensor } from '../../core/tensor.js';
import {
  decodeSignatureDefMap,
  MODEL_SERVICE,
  PREDICTION_SERVICE,
  SIGNATURE_DEF_FIELD,
  SIGNATURE_DEF_MAP_TYPE_URL,
  type GetModelMetadataRequestMessage,
  type GetModelMetadataResponseMessage,
  type GetModelStatusRequestMessage,
  type GetModelStatusResponseMessage,
  type PredictRequestMessage,
  type PredictResponseMessage,
  type SignatureDefMapMessage,
} from '../../protocols/tfserving/grpc-proto.js';
import {
  findSignature,
  modelSpecFor,
  readyFromStatus,
  servedVersion,
  signatureToMetadata,
} from '../../protocols/tfserving/signature.js';
import { tensorFromProto, tensorToProto } from '../../protocols/tfserving/tensor-proto.js';
import { DEFAULT_MAX_MESSAGE_BYTES, type Backend, type CallOptions, type EndpointOptions } from '../backend.js';
import { GrpcEndpoint, rpcOf } from '../grpc-call.js';
import { requestedOutputNames, signatureFor } from './options.js';

/** A model name no one serves: a server that answers NOT_FOUND for it is up. */
const PROBE_MODEL = '__infergate_readiness_probe__';

const PREDICT = rpcOf<PredictRequestMessage, PredictResponseMessage>(PREDICTION_SERVICE, 'PredictionService', 'Predict');
const GET_MODEL_METADATA = rpcOf<GetModelMetadataRequestMessage, GetModelMetadataResponseMessage>(
  PREDICTION_SERVICE,
  'PredictionService',
  'GetModelMetadata',
);
const GET_MODEL_STATUS = rpcOf<GetModelStatusRequestMessage, GetModelStatusResponseMessage>(
  MODEL_SERVICE,
  'ModelService',
  'GetModelStatus',
);

/**
 * TF Serving over gRPC (PredictionService and ModelService) on one channel
 * per endpoint. Inputs go as tensor_content (their bytes as they are);
 * replies are read in whatever form the server chose (typed *_val fields by
 * default, tensor_content, or the broadcast form).
 */
export class TfServingGrpcBackend implements Backend {
  readonly kind = 'tfserving' as const;
  readonly protocol = 'grpc' as const;
  readonly endpoint: string;
  private readonly grpc: GrpcEndpoint;

  constructor(opts: EndpointOptions & { maxMessageBytes?: number }) {
    this.endpoint = opts.endpoint;
    this.grpc = new GrpcEndpoint(this.kind, opts.endpoint, opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

  async infer(req: InferRequest, opts: CallOptions): Promise<InferResponse> {
    const wanted = requestedOutputNames(req);
    const request: PredictRequestMessage = {
      model_spec: modelSpecFor(req.model, req.version, signatureFor(opts, req)),
      // fromEntries defines own properties, so an input named "__proto__" stays a plain key.
      inputs: Object.fromEntries(req.inputs.map((t) => [t.name, tensorToProto(t)])),
      ...(wanted !== undefined ? { output_filter: wanted } : {}),
    };
    const reply = await this.grpc.call(PREDICT, request, opts);
    const outputs = this.grpc.decodeReply(() => outputsFromReply(reply, wanted));
    return {
      model: req.model,
      version: servedVersion(reply.model_spec) ?? req.version,
      ...(req.id !== undefined ? { id: req.id } : {}),
      outputs,
    };
  }

  async modelReady(model: string, version: string, opts: CallOptions): Promise<boolean> {
    const reply = await this.grpc.call(GET_MODEL_STATUS, { model_spec: modelSpecFor(model, version) }, opts);
    return this.grpc.decodeReply(() => readyFromStatus(reply));
  }

  async modelMetadata(model: string, version: string, opts: CallOptions): Promise<ModelMetadata> {
    const signature = signatureFor(opts);
    const reply = await this.grpc.call(
      GET_MODEL_METADATA,
      { model_spec: modelSpecFor(model, version), metadata_field: [SIGNATURE_DEF_FIELD] },
      opts,
    );
    const signatures = this.grpc.decodeReply(() => signatureDefMapOf(reply));
    const served = servedVersion(reply.model_spec);
    // Outside decodeReply: a missing signature is the caller's FAILED_PRECONDITION, not a malformed reply.
    const sig = findSignature(signatures, signature, model);
    return this.grpc.decodeReply(() => signatureToMetadata(sig, signature, model, served !== undefined ? [served] : []));
  }

  /**
   * TF Serving has no health rpc: the status of a model no one serves is
   * asked for, and NOT_FOUND (or any answer) means the server is up. An
   * unreachable server is UNAVAILABLE, as for every backend.
   */
  async serverReady(opts: CallOptions): Promise<boolean> {
    try {
      await this.grpc.call(GET_MODEL_STATUS, { model_spec: { name: PROBE_MODEL } }, opts);
      return true;
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'NOT_FOUND') return true;
      throw err;
    }
  }

  async close(): Promise<void> {
    this.grpc.close();
  }
}

/** The reply's outputs: in the order asked for when outputs were named, else as the server sent them. */
function outputsFromReply(reply: PredictResponseMessage, wanted: readonly string[] | undefined): Tensor[] {
  const outputs = reply.outputs ?? {};
  const names = wanted ?? Object.keys(outputs);
  return names.map((name) => {
    const proto = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
    if (proto === undefined) throw invalidArgument(`output '${name}' was asked for but is not in the reply`);
    return tensorFromProto(name, proto, `output '${name}'`);
  });
}

/** The SignatureDefMap packed in the reply's google.protobuf.Any. */
function signatureDefMapOf(reply: GetModelMetadataResponseMessage): SignatureDefMapMessage {
  const entry = reply.metadata?.[SIGNATURE_DEF_FIELD];
  if (entry === undefined) throw invalidArgument(`the metadata has no '${SIGNATURE_DEF_FIELD}' entry`);
  if (entry.type_url !== SIGNATURE_DEF_MAP_TYPE_URL) {
    throw invalidArgument(`the '${SIGNATURE_DEF_FIELD}' entry holds ${entry.type_url ?? 'no type'}, not ${SIGNATURE_DEF_MAP_TYPE_URL}`);
  }
  return decodeSignatureDefMap(entry.value ?? Buffer.alloc(0));
}
