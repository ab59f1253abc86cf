import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The KServe v2 / Triton gRPC service (package `inference`), loaded once from
 * protos/inference/grpc_service.proto. Both the gateway's client-facing gRPC
 * API and the Triton gRPC backend use these definitions.
 *
 * Loader options: int64 fields decode as decimal strings (exact, no Long
 * objects), bytes as Buffers (views into the received message, no copy),
 * absent fields stay absent (`defaults: false`) and a oneof names its chosen
 * field (`parameter_choice`). When sending, int64 fields take decimal strings
 * or numbers, and repeated bytes take Buffers.
 */
const PROTO_PATH = fileURLToPath(new URL('../../../protos/inference/grpc_service.proto', import.meta.url));

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

function loadInferenceService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(PROTO_PATH, PROTO_LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(definition).inference;
  const ctor = typeof pkg === 'object' ? (pkg as grpc.GrpcObject).GRPCInferenceService : undefined;
  if (typeof ctor !== 'function') {
    throw new Error(`${PROTO_PATH} does not define service inference.GRPCInferenceService`);
  }
  return ctor;
}

/** Client constructor for inference.GRPCInferenceService (backends). */
export const InferenceClient: grpc.ServiceClientConstructor = loadInferenceService();

/** inference.GRPCInferenceService, for `server.addService` (and its per-rpc serializers). */
export const INFERENCE_SERVICE: grpc.ServiceDefinition = InferenceClient.service;

// The loaded message objects. Every field is optional: with `defaults: false`
// a field the sender left at its default is absent. int64 values are decimal
// strings.

export interface InferParameterMessage {
  bool_param?: boolean;
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
  /** Which of the fields above is set (oneof `parameter_choice`). */
  parameter_choice?: string;
}

export type ParametersMessage = Record<string, InferParameterMessage>;

export interface InferTensorContentsMessage {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: string[];
  uint_contents?: number[];
  uint64_contents?: string[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

/** InferInputTensor and InferOutputTensor share this layout. */
export interface InferTensorMessage {
  name?: string;
  datatype?: string;
  shape?: string[];
  parameters?: ParametersMessage;
  contents?: InferTensorContentsMessage;
}

export interface InferRequestedOutputTensorMessage {
  name?: string;
  parameters?: ParametersMessage;
}

export interface ModelInferRequestMessage {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: ParametersMessage;
  inputs?: InferTensorMessage[];
  outputs?: InferRequestedOutputTensorMessage[];
  raw_input_contents?: Buffer[];
}

export interface ModelInferResponseMessage {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: ParametersMessage;
  outputs?: InferTensorMessage[];
  raw_output_contents?: Buffer[];
}

export interface ModelStreamInferResponseMessage {
  error_message?: string;
  infer_response?: ModelInferResponseMessage;
}

export type ServerLiveRequestMessage = Record<string, never>;
export interface ServerLiveResponseMessage {
  live?: boolean;
}

export type ServerReadyRequestMessage = Record<string, never>;
export interface ServerReadyResponseMessage {
  ready?: boolean;
}

export interface ModelReadyRequestMessage {
  name?: string;
  version?: string;
}
export interface ModelReadyResponseMessage {
  ready?: boolean;
}

export type ServerMetadataRequestMessage = Record<string, never>;
export interface ServerMetadataResponseMessage {
  name?: string;
  version?: string;
  extensions?: string[];
}

export interface ModelMetadataRequestMessage {
  name?: string;
  version?: string;
}
export interface TensorMetadataMessage {
  name?: string;
  datatype?: string;
  shape?: string[];
}
export interface ModelMetadataResponseMessage {
  name?: string;
  versions?: string[];
  platform?: string;
  inputs?: TensorMetadataMessage[];
  outputs?: TensorMetadataMessage[];
}

export interface RepositoryIndexRequestMessage {
  repository_name?: string;
  ready?: boolean;
}
export interface ModelIndexMessage {
  name?: string;
  version?: string;
  state?: string;
  reason?: string;
}
export interface RepositoryIndexResponseMessage {
  models?: ModelIndexMessage[];
}
