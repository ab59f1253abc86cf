import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../../reference/torchserve/index.js';
import { TorchServeGrpcBackend } from '../../../src/backends/torchserve/grpc.js';
import { inBandError, refineGrpcError } from '../../../src/backends/torchserve/errors.js';
import { GatewayError } from '../../../src/core/errors.js';
import { torchServeAdapterSuite } from '../../helpers/torchserve-backend-suite.js';
import { bodyRequest, bytesOf, collect, expectGatewayError, linearRequest, simpleRequest, soon } from '../../helpers/torchserve.js';

torchServeAdapterSuite('grpc', (opts) => new TorchServeGrpcBackend(opts));

// Built straight from the proto, independently of src/, to read what the reference received and to fake a server.
const PROTO_DIR = fileURLToPath(new URL('../../../protos/torchserve/', import.meta.url));
const definition = protoLoader.loadSync('inference.proto', { includeDirs: [PROTO_DIR], keepCase: true, defaults: false });
const SERVICE = definition['org.pytorch.serve.grpc.inference.InferenceAPIsService'] as grpc.ServiceDefinition;
const decodeRequest = (bytes: Buffer) =>
  SERVICE.Predictions!.requestDeserialize(bytes) as { model_name: string; model_version?: string; input: Record<string, Buffer> };

describe('TorchServe gRPC adapter: readiness, metadata, wire', () => {
  let ref: TorchServeReference;
  let backend: TorchServeGrpcBackend;

  beforeAll(async () => {
    ref = await startTorchServeReference({ host: '127.0.0.1' });
    backend = new TorchServeGrpcBackend({ endpoint: ref.grpcEndpoint, maxConnections: 1 });
  });
  afterAll(async () => {
    await backend.close();
    await ref.close();
  });

  it('modelReady reports the server health: the inference API cannot describe a model', async () => {
    expect(await backend.modelReady('linear', '', soon())).toBe(true);
    expect(await backend.modelReady('unready', '', soon())).toBe(true);
  });

  it('modelMetadata is the asked version with no tensors, without a call', async () => {
    expect(await backend.modelMetadata('linear', '1.0')).toEqual({
      name: 'linear',
      versions: ['1.0'],
      platform: 'pytorch_torchserve',
      inputs: [],
      outputs: [],
    });
  });

  it('sends one input-map entry per input, each holding its JSON; a lone body under "data"', async () => {
    await backend.infer(simpleRequest(), soon());
    const sent = decodeRequest(ref.stats.lastRequest!.body);
    expect(Object.keys(sent.input)).toEqual(['INPUT0', 'INPUT1']);
    expect(JSON.parse(sent.input.INPUT0!.toString())).toHaveLength(1);
    await backend.infer(linearRequest([[1, 2, 3, 4]], '1.0'), soon());
    const linear = decodeRequest(ref.stats.lastRequest!.body);
    expect([linear.model_name, linear.model_version, linear.input.INPUT0!.toString()]).toEqual(['linear', '1.0', '[[1,2,3,4]]']);
    await backend.infer(bodyRequest('echo', 'hello'), soon());
    expect(Object.keys(decodeRequest(ref.stats.lastRequest!.body).input)).toEqual(['data']);
  });

  it("TorchServe's INTERNAL 'Model not found' is NOT_FOUND on streams too", async () => {
    await expectGatewayError(collect(backend.inferStream(bodyRequest('nosuch', '{}'), soon())), 'NOT_FOUND', 'Model not found: nosuch');
  });
});

describe('TorchServe gRPC adapter: in-band stream errors', () => {
  let server: grpc.Server;
  let backend: TorchServeGrpcBackend;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(SERVICE, {
      // One good part, then an error carried in-band in `status`, as StreamPredictions2 reports them.
      StreamPredictions: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        call.write({ prediction: Buffer.from('first') });
        call.write({ status: { code: grpc.status.INTERNAL, message: 'Model version: 3 does not exist for model: m' } });
        call.end();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    backend = new TorchServeGrpcBackend({ endpoint: `127.0.0.1:${port}`, maxConnections: 1 });
  });
  afterAll(async () => {
    await backend.close();
    server.forceShutdown();
  });

  it('yields the parts before the error, then fails with the in-band status', async () => {
    const seen: string[] = [];
    const stream = (async () => {
      for await (const part of backend.inferStream(bodyRequest('m', 'x'), soon())) seen.push(bytesOf(part.outputs[0]).toString());
    })();
    await expectGatewayError(stream, 'NOT_FOUND', 'Model version: 3 does not exist for model: m');
    expect(seen).toEqual(['first']);
  });
});

describe('TorchServe gRPC error reading', () => {
  it('reads the meaning of INTERNAL from its message and leaves other errors alone', () => {
    expect((refineGrpcError(new GatewayError('INTERNAL', 'Model not found: x')) as GatewayError).code).toBe('NOT_FOUND');
    expect((refineGrpcError(new GatewayError('INTERNAL', 'Model "x" has no worker to serve inference request.')) as GatewayError).code).toBe(
      'UNAVAILABLE',
    );
    const other = new GatewayError('INTERNAL', 'worker died');
    expect(refineGrpcError(other)).toBe(other);
    const notGateway = new Error('x');
    expect(refineGrpcError(notGateway)).toBe(notGateway);
  });

  it('an in-band status of 0 is no error', () => {
    expect(inBandError(undefined)).toBeUndefined();
    expect(inBandError({ code: 0, message: '' })).toBeUndefined();
    expect(inBandError({ code: grpc.status.INVALID_ARGUMENT, message: 'bad' })).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'bad' });
  });
});
