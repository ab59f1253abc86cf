import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../reference/torchserve/index.js';
import { validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { v2Client, type V2Client } from '../helpers/grpc-client.js';
import { postBinary, splitBinaryReply } from '../helpers/http.js';
import { SAMPLES, type Sample } from '../helpers/samples.js';

/**
 * Every v2 datatype through TorchServe, which carries tensors as JSON: the
 * reference `identity_json` handler returns its JSON body re-serialised, and
 * the model's `output_types` types the answer back. 64-bit samples stay within
 * 2^53 here, since a Python-style JSON handler keeps no more.
 */
const SAFE_64: Record<string, Sample> = {
  INT64: { datatype: 'INT64', shape: [2, 3], json: [], raw: int64([-(2 ** 53) + 1, -1, 0, 1, 2 ** 40, 2 ** 53 - 1]) },
  UINT64: { datatype: 'UINT64', shape: [2, 3], json: [], raw: uint64([0, 1, 255, 2 ** 32, 2 ** 40, 2 ** 53 - 1]) },
};
const CASES = SAMPLES.map((s) => SAFE_64[s.datatype] ?? s);

function int64(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
  return b;
}
function uint64(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), i * 8));
  return b;
}

let torchserve: TorchServeReference;
let gateway: RunningGateway;
let http: Pool;
let grpc: V2Client;

beforeAll(async () => {
  torchserve = await startTorchServeReference();
  const models: Record<string, unknown> = {};
  for (const { datatype } of CASES) {
    // The input goes out under the key OUTPUT0, and comes back as the output OUTPUT0.
    const torchserveOptions = { input_keys: { INPUT0: 'OUTPUT0' }, output_types: { OUTPUT0: datatype } };
    for (const protocol of ['rest', 'grpc']) {
      models[`${protocol}.${datatype.toLowerCase()}`] = { backend: `ts-${protocol}`, model: 'identity_json', torchserve: torchserveOptions };
    }
  }
  gateway = await startGateway(
    validateConfig({
      auth: { enabled: false },
      server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, log_level: 'silent' },
      backends: {
        'ts-rest': { kind: 'torchserve', protocol: 'rest', endpoints: [torchserve.httpEndpoint] },
        'ts-grpc': { kind: 'torchserve', protocol: 'grpc', endpoints: [torchserve.grpcEndpoint] },
      },
      models,
    }),
    silentLogger,
  );
  http = new Pool(`http://127.0.0.1:${gateway.httpPort}`);
  grpc = v2Client(`127.0.0.1:${gateway.grpcPort}`);
});
afterAll(async () => {
  grpc?.close();
  await http?.close();
  await gateway?.close(1000);
  await torchserve?.close();
});

describe('v2 tensors of every datatype through TorchServe (REST and gRPC backends)', () => {
  for (const sample of CASES) {
    for (const protocol of ['rest', 'grpc']) {
      const model = `${protocol}.${sample.datatype.toLowerCase()}`;

      it(`${model}: REST binary in and out, bytes identical`, async () => {
        const reply = await postBinary(
          http,
          `/v2/models/${model}/infer`,
          {
            inputs: [{ name: 'INPUT0', datatype: sample.datatype, shape: sample.shape, parameters: { binary_data_size: sample.raw.length } }],
            parameters: { binary_data_output: true },
          },
          [sample.raw],
        );
        expect(reply.status, reply.text()).toBe(200);
        const { header, blobs } = splitBinaryReply(reply);
        expect(header.outputs).toEqual([
          { name: 'OUTPUT0', datatype: sample.datatype, shape: sample.shape, parameters: { binary_data_size: sample.raw.length } },
        ]);
        expect(blobs.equals(sample.raw)).toBe(true);
      });

      it(`${model}: gRPC raw in and out, bytes identical`, async () => {
        const res = await grpc.unary('ModelInfer', {
          model_name: model,
          inputs: [{ name: 'INPUT0', datatype: sample.datatype, shape: sample.shape.map(String) }],
          raw_input_contents: [sample.raw],
        });
        expect((res.outputs as { name: string; datatype: string }[]).map((o) => [o.name, o.datatype])).toEqual([['OUTPUT0', sample.datatype]]);
        expect((res.raw_output_contents as Buffer[])[0]!.equals(sample.raw)).toBe(true);
      });
    }
  }
});
