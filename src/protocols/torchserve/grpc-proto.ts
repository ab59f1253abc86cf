import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * TorchServe's gRPC inference API (org.pytorch.serve.grpc.inference.InferenceAPIsService),
 * loaded once from protos/torchserve/inference.proto, for both the TorchServe
 * gRPC backend and the gateway's TorchServe front door.
 *
 * Loader options as for the v2 service: bytes decode as Buffers (views into the
 * received message), maps as plain objects, unset fields stay absent.
 */
const PROTO_DIR = fileURLToPath(new URL('../../../protos/torchserve/', import.meta.url));
export const TORCHSERVE_SERVICE_NAME = 'org.pytorch.serve.grpc.inference.InferenceAPIsService';

function loadService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync('inference.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const service = definition[TORCHSERVE_SERVICE_NAME];
  if (service === undefined || !('Predictions' in service)) {
    throw new Error(`${PROTO_DIR}inference.proto does not define ${TORCHSERVE_SERVICE_NAME}`);
  }
  return service as grpc.ServiceDefinition;
}

export const TORCHSERVE_SERVICE: grpc.ServiceDefinition = loadService();

export interface PredictionsRequestMessage {
  model_name?: string;
  /** Empty selects the model's default version. */
  model_version?: string;
  /** Named inputs, each handed to the handler as one field of raw bytes. */
  input?: Record<string, Buffer>;
  sequence_id?: string;
}

export interface RpcStatusMessage {
  code?: number;
  message?: string;
}

export interface PredictionResponseMessage {
  prediction?: Buffer;
  sequence_id?: string;
  /** In-band error of a streamed response. */
  status?: RpcStatusMessage;
}

export interface TorchServeHealthResponseMessage {
  /** Pretty-printed JSON, {"status": "Healthy"} or "Unhealthy". */
  health?: string;
}

export type EmptyMessage = Record<string, never>;
