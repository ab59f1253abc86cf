import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { Pool } from 'undici';
import { startTfServingReference, type TfServingReference } from '../../reference/tfserving/index.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { DATATYPE_NAMES } from './stack.js';

/**
 * A gateway in front of both the reference Triton and the reference TF Serving
 * (each over REST and gRPC), plus TF Serving clients built straight from the
 * official protos, as any TF Serving client is, independent of the gateway's
 * own proto loading and codecs.
 *
 * Public models: `tf.<m>` (TF Serving over gRPC), `tfrest.<m>` (TF Serving over
 * REST), `triton.<m>` (Triton over gRPC), `tritonrest.<m>` (Triton over REST),
 * for m in linear, simple, unready and identity_<datatype>; plus
 * `tf.scores` / `tfrest.scores` (linear with its scores_only signature, REST
 * in the row layout), `tf.ghost` (a model TF does not have), `tf.down`
 * (an endpoint nothing listens on).
 */
export interface TfStack {
  readonly tf: TfServingReference;
  readonly triton: TritonReference;
  readonly gateway: RunningGateway;
  readonly http: Pool;
  readonly grpcAddress: string;
  close(): Promise<void>;
}

export const MODEL_NAMES = ['linear', 'simple', 'unready', ...DATATYPE_NAMES.map((d) => `identity_${d.toLowerCase()}`)];

export async function startTfStack(): Promise<TfStack> {
  const tf = await startTfServingReference({ host: '127.0.0.1' });
  const triton = await startTritonReference({ host: '127.0.0.1' });
  const models: Record<string, unknown> = {};
  for (const m of MODEL_NAMES) {
    models[`tf.${m}`] = { backend: 'tf-grpc', model: m };
    models[`tfrest.${m}`] = { backend: 'tf-rest', model: m };
    models[`triton.${m}`] = { backend: 'triton-grpc', model: m };
    models[`tritonrest.${m}`] = { backend: 'triton-rest', model: m };
  }
  models['tf.scores'] = { backend: 'tf-grpc', model: 'linear', tfserving: { signature_name: 'scores_only' } };
  models['tfrest.scores'] = { backend: 'tf-rest', model: 'linear', tfserving: { signature_name: 'scores_only', rest_format: 'row' } };
  models['tf.ghost'] = { backend: 'tf-grpc', model: 'no_such_model' };
  models['tf.down'] = { backend: 'nowhere', model: 'linear' };
  const health = { interval_ms: 0 };
  const config = validateConfig({
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      max_body_bytes: 1024 * 1024,
      request_timeout_ms: 5000,
      log_level: 'silent',
    },
    auth: { enabled: false },
    backends: {
      'tf-grpc': { kind: 'tfserving', protocol: 'grpc', endpoints: [tf.grpcEndpoint], health_check: health },
      'tf-rest': { kind: 'tfserving', protocol: 'rest', endpoints: [tf.httpEndpoint], health_check: health },
      'triton-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint], health_check: health },
      'triton-rest': { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint], health_check: health },
      // Port 1 on loopback: nothing listens there, so connections are refused at once.
      nowhere: { kind: 'tfserving', protocol: 'grpc', endpoints: ['127.0.0.1:1'], health_check: health },
    },
    models,
  });
  const gateway = await startGateway(config, silentLogger);
  const http = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 8 });
  return {
    tf,
    triton,
    gateway,
    http,
    grpcAddress: `127.0.0.1:${gateway.grpcPort}`,
    async close() {
      await http.close();
      await gateway.close(1000);
      await Promise.all([tf.close(), triton.close()]);
    },
  };
}

// ---- a TF Serving gRPC client from the official protos ---------------------------------

const INCLUDE = fileURLToPath(new URL('../../protos/tensorflow/', import.meta.url));
const definition = protoLoader.loadSync(
  ['tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'],
  { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [INCLUDE] },
);
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  tensorflow: { serving: { PredictionService: grpc.ServiceClientConstructor; ModelService: grpc.ServiceClientConstructor } };
};
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => INCLUDE + target;
root.loadSync('tensorflow_serving/apis/get_model_metadata.proto', { keepCase: true });
const SIGNATURE_DEF_MAP = root.lookupType('tensorflow.serving.SignatureDefMap');

export type Message = Record<string, unknown>;

export interface TfClient {
  predict(request: Message): Promise<Message>;
  metadata(request: Message): Promise<Message>;
  status(request: Message): Promise<Message>;
  /** The SignatureDefMap inside a GetModelMetadata reply's Any. */
  signatures(reply: Message): Record<string, { inputs: Record<string, Message>; outputs: Record<string, Message>; method_name: string }>;
  close(): void;
}

type Unary = (req: Message, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Message) => void) => void;

export function tfClient(address: string): TfClient {
  const prediction = new pkg.tensorflow.serving.PredictionService(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Unary>;
  const model = new pkg.tensorflow.serving.ModelService(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Unary>;
  const unary = (client: grpc.Client & Record<string, Unary>, rpc: string) => (request: Message) =>
    new Promise<Message>((resolve, reject) => {
      client[rpc]!.call(client, request, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  return {
    predict: unary(prediction, 'Predict'),
    metadata: unary(prediction, 'GetModelMetadata'),
    status: unary(model, 'GetModelStatus'),
    signatures(reply) {
      const any = (reply.metadata as Record<string, { type_url: string; value: Buffer }>).signature_def!;
      if (any.type_url !== 'type.googleapis.com/tensorflow.serving.SignatureDefMap') throw new Error(`unexpected Any ${any.type_url}`);
      const map = SIGNATURE_DEF_MAP.toObject(SIGNATURE_DEF_MAP.decode(any.value), { longs: String, enums: String, defaults: true }) as {
        signature_def: ReturnType<TfClient['signatures']>;
      };
      return map.signature_def;
    },
    close() {
      prediction.close();
      model.close();
    },
  };
}

/** A TensorProto a Python client would build (tf.make_tensor_proto): tensor_content for numbers. */
export function tensorProto(dtype: string, shape: readonly number[], fields: Message): Message {
  return { dtype, tensor_shape: { dim: shape.map((size) => ({ size: String(size) })) }, ...fields };
}

/** Awaits a gRPC failure and returns it. */
export async function grpcFailure(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected a gRPC error, got a reply');
}

export { grpc };
