import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { PROTO_LOADER_OPTIONS } from '../v2/grpc-proto.js';

/**
 * TF Serving's gRPC services (package `tensorflow.serving`), loaded once from
 * protos/tensorflow: PredictionService (Predict, GetModelMetadata) and
 * ModelService (GetModelStatus). The TF Serving backend adapter and the
 * gateway's TF Serving front door both use these definitions.
 *
 * Same loader options as the v2 protos: int64 as decimal strings, enums as
 * their names (DT_FLOAT, AVAILABLE), bytes as Buffers, absent fields absent.
 */
const INCLUDE_ROOT = fileURLToPath(new URL('../../../protos/tensorflow/', import.meta.url));
const PREDICTION_PROTO = 'tensorflow_serving/apis/prediction_service.proto';
const MODEL_SERVICE_PROTO = 'tensorflow_serving/apis/model_service.proto';

const definition = protoLoader.loadSync([PREDICTION_PROTO, MODEL_SERVICE_PROTO], {
  ...PROTO_LOADER_OPTIONS,
  includeDirs: [INCLUDE_ROOT],
});

function service(name: string): grpc.ServiceDefinition {
  const found = definition[name];
  // Message and enum entries carry a `format`; services are plain maps of methods.
  if (found === undefined || 'format' in found) throw new Error(`${INCLUDE_ROOT} does not define service ${name}`);
  return found as grpc.ServiceDefinition;
}

/** tensorflow.serving.PredictionService, for `server.addService` and per-rpc serializers. */
export const PREDICTION_SERVICE: grpc.ServiceDefinition = service('tensorflow.serving.PredictionService');
/** tensorflow.serving.ModelService. */
export const MODEL_SERVICE: grpc.ServiceDefinition = service('tensorflow.serving.ModelService');

export const PredictionServiceClient: grpc.ServiceClientConstructor = grpc.makeGenericClientConstructor(
  PREDICTION_SERVICE,
  'PredictionService',
);
export const ModelServiceClient: grpc.ServiceClientConstructor = grpc.makeGenericClientConstructor(MODEL_SERVICE, 'ModelService');

// GetModelMetadataResponse carries the SignatureDefMap inside a google.protobuf.Any,
// i.e. as serialized bytes; proto-loader only (de)serializes rpc arguments, so
// protobufjs encodes and decodes the inner message, from the same protos.
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => INCLUDE_ROOT + target;
root.loadSync('tensorflow_serving/apis/get_model_metadata.proto', { keepCase: true });
const SIGNATURE_DEF_MAP = root.lookupType('tensorflow.serving.SignatureDefMap');

export const SIGNATURE_DEF_MAP_TYPE_URL = 'type.googleapis.com/tensorflow.serving.SignatureDefMap';
/** The only metadata field TF Serving knows, and the key of the Any in GetModelMetadataResponse. */
export const SIGNATURE_DEF_FIELD = 'signature_def';

export function encodeSignatureDefMap(map: SignatureDefMapMessage): Buffer {
  const bytes = SIGNATURE_DEF_MAP.encode(SIGNATURE_DEF_MAP.fromObject(map)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Throws (protobufjs's own error) on bytes that are not a SignatureDefMap. */
export function decodeSignatureDefMap(bytes: Uint8Array): SignatureDefMapMessage {
  return SIGNATURE_DEF_MAP.toObject(SIGNATURE_DEF_MAP.decode(bytes), {
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  }) as SignatureDefMapMessage;
}

// The loaded message objects. Every field is optional (`defaults: false`);
// int64 values are decimal strings when decoded, and may be strings or
// numbers when sent. Enums are names when decoded, names or numbers when sent.

export interface TensorShapeMessage {
  dim?: { size?: string | number; name?: string }[];
  unknown_rank?: boolean;
}

export interface TensorProtoMessage {
  dtype?: string | number;
  tensor_shape?: TensorShapeMessage | null;
  version_number?: number;
  tensor_content?: Buffer;
  half_val?: number[];
  float_val?: number[];
  double_val?: number[];
  int_val?: number[];
  string_val?: Buffer[];
  scomplex_val?: number[];
  int64_val?: (string | number)[];
  bool_val?: boolean[];
  dcomplex_val?: number[];
  resource_handle_val?: unknown[];
  variant_val?: unknown[];
  uint32_val?: number[];
  uint64_val?: (string | number)[];
  float8_val?: Buffer;
}

export interface ModelSpecMessage {
  name?: string;
  /** google.protobuf.Int64Value; `{}` is version 0. */
  version?: { value?: string | number } | null;
  version_label?: string;
  signature_name?: string;
  /** Which of version / version_label is set (oneof `version_choice`). */
  version_choice?: string;
}

export interface PredictRequestMessage {
  model_spec?: ModelSpecMessage | null;
  inputs?: Record<string, TensorProtoMessage>;
  output_filter?: string[];
}

export interface PredictResponseMessage {
  outputs?: Record<string, TensorProtoMessage>;
  model_spec?: ModelSpecMessage | null;
}

export interface TensorInfoMessage {
  name?: string;
  dtype?: string | number;
  tensor_shape?: TensorShapeMessage | null;
  coo_sparse?: unknown;
  encoding?: string;
}

export interface SignatureDefMessage {
  inputs?: Record<string, TensorInfoMessage>;
  outputs?: Record<string, TensorInfoMessage>;
  method_name?: string;
}

export interface SignatureDefMapMessage {
  signature_def?: Record<string, SignatureDefMessage>;
}

export interface AnyMessage {
  type_url?: string;
  value?: Buffer;
}

export interface GetModelMetadataRequestMessage {
  model_spec?: ModelSpecMessage | null;
  metadata_field?: string[];
}

export interface GetModelMetadataResponseMessage {
  model_spec?: ModelSpecMessage | null;
  metadata?: Record<string, AnyMessage>;
}

export interface GetModelStatusRequestMessage {
  model_spec?: ModelSpecMessage | null;
}

export interface StatusProtoMessage {
  error_code?: string | number;
  error_message?: string;
}

export interface ModelVersionStatusMessage {
  version?: string | number;
  state?: string | number;
  status?: StatusProtoMessage | null;
}

export interface GetModelStatusResponseMessage {
  model_version_status?: ModelVersionStatusMessage[];
}
