import { invalidArgument } from '../../core/errors.js';
import type { RequestedOutput } from '../../core/inference.js';
import type { Tensor } from '../../core/tensor.js';
import {
  encodeSignatureDefMap,
  MODEL_SERVICE,
  PREDICTION_SERVICE,
  SIGNATURE_DEF_FIELD,
  SIGNATURE_DEF_MAP_TYPE_URL,
  type GetModelMetadataRequestMessage,
  type GetModelMetadataResponseMessage,
  type GetModelStatusRequestMessage,
  type GetModelStatusResponseMessage,
  type ModelSpecMessage,
  type PredictRequestMessage,
  type PredictResponseMessage,
} from '../../protocols/tfserving/grpc-proto.js';
import {
  DEFAULT_SIGNATURE,
  modelSpecFor,
  reportedVersion,
  signatureDefMapFor,
  versionOfModelSpec,
} from '../../protocols/tfserving/signature.js';
import { tensorFromProto, tensorToProto } from '../../protocols/tfserving/tensor-proto.js';
import { modelVersionStatus, signatureParameters } from '../tfserving-service.js';
import { inferenceHandler, unaryHandler } from './calls.js';
import type { GrpcFrontDoor } from './front-doors.js';

/**
 * TF Serving's gRPC API on the gateway's gRPC port, so TF Serving's clients
 * can call any model the gateway routes: PredictionService Predict and
 * GetModelMetadata, ModelService GetModelStatus. Outputs are sent as
 * tensor_content (their bytes as they are); TF's clients read it as they read
 * typed values (tf.make_ndarray handles both).
 */
export const addTfServingServices: GrpcFrontDoor = (server, service, opts) => {
  server.addService(PREDICTION_SERVICE, {
    Predict: inferenceHandler<PredictRequestMessage, PredictResponseMessage>(
      'tensorflow.serving.PredictionService/Predict',
      opts,
      async (req, ctx) => {
        const spec = requireModelSpec(req.model_spec);
        const model = spec.name ?? '';
        const version = versionOfModelSpec(spec);
        // Resolved before the tensors are decoded: an unknown model is NOT_FOUND whatever the inputs hold.
        const target = service.resolve(model, version, ctx);
        const inputs = inputsOf(req.inputs);
        const outputs = requestedOutputs(req.output_filter);
        const parameters = signatureParameters(spec.signature_name, target);
        const response = await service.infer(
          { model, version, inputs, ...(outputs !== undefined ? { outputs } : {}), ...(parameters !== undefined ? { parameters } : {}) },
          ctx,
          target,
        );
        // TF names the version that ran (a number); a label or a non-numeric backend version is left out.
        const ran = reportedVersion(response.version || version, []);
        return {
          outputs: Object.fromEntries(response.outputs.map((t) => [t.name, tensorToProto(t)])),
          model_spec: modelSpecFor(model, ran, spec.signature_name || DEFAULT_SIGNATURE),
        };
      },
    ),
    GetModelMetadata: unaryHandler<GetModelMetadataRequestMessage, GetModelMetadataResponseMessage>(
      'tensorflow.serving.PredictionService/GetModelMetadata',
      opts,
      async (req, ctx) => {
        checkMetadataFields(req.metadata_field);
        const spec = requireModelSpec(req.model_spec);
        const model = spec.name ?? '';
        const version = versionOfModelSpec(spec);
        const meta = await service.modelMetadata(model, version, ctx);
        return {
          model_spec: modelSpecFor(model, reportedVersion(version, meta.versions), ''),
          metadata: {
            [SIGNATURE_DEF_FIELD]: { type_url: SIGNATURE_DEF_MAP_TYPE_URL, value: encodeSignatureDefMap(signatureDefMapFor(meta)) },
          },
        };
      },
    ),
  });
  server.addService(MODEL_SERVICE, {
    GetModelStatus: unaryHandler<GetModelStatusRequestMessage, GetModelStatusResponseMessage>(
      'tensorflow.serving.ModelService/GetModelStatus',
      opts,
      async (req, ctx) => {
        const spec = requireModelSpec(req.model_spec);
        return { model_version_status: await modelVersionStatus(service, spec.name ?? '', versionOfModelSpec(spec), ctx) };
      },
    ),
  });
};

function requireModelSpec(spec: ModelSpecMessage | null | undefined): ModelSpecMessage {
  if (spec === undefined || spec === null || !spec.name) throw invalidArgument('Missing ModelSpec: model_spec.name names the model');
  return spec;
}

function inputsOf(map: PredictRequestMessage['inputs']): Tensor[] {
  if (map === undefined || map === null) return [];
  return Object.entries(map).map(([name, proto]) => {
    if (name === '') throw invalidArgument('an input has an empty name');
    return tensorFromProto(name, proto, `input '${name}'`);
  });
}

function requestedOutputs(filter: readonly string[] | undefined): RequestedOutput[] | undefined {
  if (filter === undefined || filter.length === 0) return undefined;
  const seen = new Set<string>();
  return filter.map((name) => {
    if (seen.has(name)) throw invalidArgument(`duplicate output tensor name: ${name}`);
    seen.add(name);
    return { name };
  });
}

/** TF requires the one field it knows, `signature_def`, and refuses others. */
function checkMetadataFields(fields: readonly string[] | undefined): void {
  if (fields === undefined || fields.length === 0) {
    throw invalidArgument(`GetModelMetadataRequest must specify at least one metadata_field ("${SIGNATURE_DEF_FIELD}")`);
  }
  const other = fields.find((f) => f !== SIGNATURE_DEF_FIELD);
  if (other !== undefined) throw invalidArgument(`Metadata field ${other} is not supported (only "${SIGNATURE_DEF_FIELD}")`);
}
