import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * A client built straight from protos/inference/grpc_service.proto, as any
 * Triton client is, independent of the gateway's own proto loading.
 */
const PROTO = fileURLToPath(new URL('../../protos/inference/grpc_service.proto', import.meta.url));
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
};

export type Message = Record<string, unknown>;

export interface V2Client {
  unary(rpc: string, request: Message, metadata?: grpc.Metadata): Promise<Message>;
  raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  close(): void;
}

export function v2Client(address: string): V2Client {
  const client = new pkg.inference.GRPCInferenceService(address, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  }) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  return {
    raw: client,
    unary: (rpc, request, metadata = new grpc.Metadata()) =>
      new Promise((resolve, reject) => {
        const fn = client[rpc]!;
        fn.call(client, request, metadata, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Message) =>
          err ? reject(err) : resolve(res),
        );
      }),
    close: () => client.close(),
  };
}

/** Runs `fn` expecting a gRPC error; returns it. */
export async function grpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected a gRPC error, got a reply');
}

export { grpc };
