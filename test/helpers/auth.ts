import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Helpers for the access-control tests (test/auth): key digests, and gRPC clients of every service that send metadata. */

export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Metadata carrying `authorization: Bearer <credential>` (or x-api-key), or nothing. */
export function credentials(credential: string | null, header: 'authorization' | 'x-api-key' = 'authorization'): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (credential !== null) metadata.set(header, header === 'authorization' ? `Bearer ${credential}` : credential);
  return metadata;
}

export type Message = Record<string, unknown>;
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

const PROTOS = fileURLToPath(new URL('../../protos/', import.meta.url));
const OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const v2 = grpc.loadPackageDefinition(protoLoader.loadSync(`${PROTOS}inference/grpc_service.proto`, OPTIONS)) as unknown as {
  inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
};
const tf = grpc.loadPackageDefinition(
  protoLoader.loadSync(['tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'], {
    ...OPTIONS,
    includeDirs: [`${PROTOS}tensorflow/`],
  }),
) as unknown as { tensorflow: { serving: { PredictionService: grpc.ServiceClientConstructor; ModelService: grpc.ServiceClientConstructor } } };
const ts = grpc.loadPackageDefinition(protoLoader.loadSync('inference.proto', { ...OPTIONS, includeDirs: [`${PROTOS}torchserve/`] })) as unknown as {
  org: { pytorch: { serve: { grpc: { inference: { InferenceAPIsService: grpc.ServiceClientConstructor } } } } };
};

/** One client per service on the gateway's gRPC port. */
export interface GrpcClients {
  readonly v2: AnyClient;
  readonly tfPrediction: AnyClient;
  readonly tfModel: AnyClient;
  readonly torchserve: AnyClient;
  close(): void;
}

export function grpcClients(address: string): GrpcClients {
  const insecure = grpc.credentials.createInsecure();
  const clients = {
    v2: new v2.inference.GRPCInferenceService(address, insecure) as AnyClient,
    tfPrediction: new tf.tensorflow.serving.PredictionService(address, insecure) as AnyClient,
    tfModel: new tf.tensorflow.serving.ModelService(address, insecure) as AnyClient,
    torchserve: new ts.org.pytorch.serve.grpc.inference.InferenceAPIsService(address, insecure) as AnyClient,
  };
  return { ...clients, close: () => Object.values(clients).forEach((c) => c.close()) };
}

/** A unary call; resolves with the reply, or with the error (so tests can look at codes and trailers). */
export function unary(client: AnyClient, rpc: string, request: Message, metadata: grpc.Metadata): Promise<{ reply?: Message; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    client[rpc]!.call(client, request, metadata, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, reply: Message) =>
      resolve(err ? { error: err } : { reply }),
    );
  });
}

export const V2_LINEAR_REQUEST = (model: string): Message => ({
  model_name: model,
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
});

export { grpc };
