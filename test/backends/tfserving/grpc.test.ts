import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTfServingReference, type TfServingReference } from '../../../reference/tfserving/index.js';
import { TfServingGrpcBackend } from '../../../src/backends/tfserving/grpc.js';
import type { InferRequest } from '../../../src/core/inference.js';
import { MODEL_SERVICE, PREDICTION_SERVICE } from '../../../src/protocols/tfserving/grpc-proto.js';
import { SAMPLES } from '../../helpers/samples.js';
import { linearRequest, soon, tfServingAdapterSuite } from '../../helpers/tfserving-backend-suite.js';
import { expectGatewayError, fp32 } from '../../helpers/tfserving.js';

tfServingAdapterSuite('grpc', (opts) => new TfServingGrpcBackend(opts), ['columnar']);

describe('TfServingGrpcBackend reads every response form', () => {
  let content: TfServingReference;
  let broadcast: TfServingReference;
  beforeAll(async () => {
    content = await startTfServingReference({ host: '127.0.0.1', responseForm: 'tensor_content' });
    broadcast = await startTfServingReference({ host: '127.0.0.1', responseForm: 'typed', broadcastScalars: true });
  });
  afterAll(async () => {
    await content.close();
    await broadcast.close();
  });

  it('tensor_content replies: every datatype, exact bytes', async () => {
    const backend = new TfServingGrpcBackend({ endpoint: content.grpcEndpoint, maxConnections: 1 });
    try {
      for (const s of SAMPLES) {
        const req: InferRequest = { model: `identity_${s.datatype.toLowerCase()}`, version: '', inputs: [{ name: 'INPUT0', datatype: s.datatype, shape: [...s.shape], data: s.raw }] };
        const out = (await backend.infer(req, soon())).outputs[0]!;
        expect(out, s.datatype).toMatchObject({ datatype: s.datatype, shape: [...s.shape] });
        expect(out.data.equals(s.raw), s.datatype).toBe(true);
      }
    } finally {
      await backend.close();
    }
  });

  it('broadcast replies: one typed value fills the shape', async () => {
    const backend = new TfServingGrpcBackend({ endpoint: broadcast.grpcEndpoint, maxConnections: 1 });
    try {
      const same = fp32([7.5, 7.5, 7.5, 7.5, 7.5, 7.5]);
      const out = (await backend.infer({ model: 'identity_fp32', version: '', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2, 3], data: same }] }, soon())).outputs[0]!;
      expect(out.shape).toEqual([2, 3]);
      expect(out.data.equals(same)).toBe(true);
      const strings = Buffer.concat(Array.from({ length: 4 }, () => Buffer.from([2, 0, 0, 0, 0x68, 0x69])));
      const bytesOut = (await backend.infer({ model: 'identity_bytes', version: '', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [2, 2], data: strings }] }, soon())).outputs[0]!;
      expect(bytesOut.data.equals(strings)).toBe(true);
    } finally {
      await backend.close();
    }
  });
});

describe('TfServingGrpcBackend against a misbehaving server', () => {
  let server: grpc.Server;
  let backend: TfServingGrpcBackend;
  const seenRequests: unknown[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(PREDICTION_SERVICE, {
      Predict: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        seenRequests.push(call.request);
        callback(null, { outputs: { Z: { dtype: 'DT_COMPLEX64', tensor_shape: { dim: [{ size: '1' }] }, scomplex_val: [1, 2] } } });
      },
      GetModelMetadata: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        callback(null, { metadata: { signature_def: { type_url: 'type.googleapis.com/something.Else', value: Buffer.alloc(0) } } });
      },
    });
    server.addService(MODEL_SERVICE, {
      GetModelStatus: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        callback({ code: grpc.status.PERMISSION_DENIED, details: 'no peeking' });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    backend = new TfServingGrpcBackend({ endpoint: `127.0.0.1:${port}`, maxConnections: 1 });
  });
  afterAll(async () => {
    await backend?.close();
    server?.forceShutdown();
  });

  it('sends tensor_content, the model spec and the output filter', async () => {
    await backend.infer(linearRequest('stable', [[1, 2, 3, 4]], { outputs: [{ name: 'Z' }], parameters: { signature_name: 'sig' } }), soon()).catch(() => undefined);
    expect(seenRequests.at(-1)).toEqual({
      model_spec: { name: 'linear', version_label: 'stable', signature_name: 'sig', version_choice: 'version_label' },
      inputs: { INPUT0: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '1' }, { size: '4' }] }, tensor_content: fp32([1, 2, 3, 4]) } },
      output_filter: ['Z'],
    });
  });

  it('a reply with a TF type v2 cannot carry is INTERNAL, naming the type', async () => {
    await expectGatewayError(backend.infer(linearRequest('1'), soon()), 'INTERNAL', /sent a malformed reply: output 'Z': TF type DT_COMPLEX64 is not supported/);
  });

  it('metadata that is not a SignatureDefMap is INTERNAL', async () => {
    await expectGatewayError(backend.modelMetadata('m', '', soon()), 'INTERNAL', /holds type.googleapis.com\/something.Else/);
  });

  it('a status the server sends is passed on; serverReady is not fooled by it', async () => {
    await expectGatewayError(backend.modelReady('m', '', soon()), 'PERMISSION_DENIED', /^no peeking$/);
    await expectGatewayError(backend.serverReady(soon()), 'PERMISSION_DENIED');
  });
});
