import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpc, grpcError, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { SAMPLES, type Sample } from '../helpers/samples.js';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
let client: V2Client;
let direct: V2Client;
beforeAll(async () => {
  stack = await startStack();
  client = v2Client(stack.grpcAddress);
  direct = v2Client(stack.triton.grpcEndpoint);
});
afterAll(async () => {
  client?.close();
  direct?.close();
  await stack?.close();
});

const { status } = grpc;

interface OutTensor {
  name: string;
  datatype: string;
  shape: string[];
}

function rawRequest(model: string, sample: Sample, id = ''): Message {
  return {
    model_name: model,
    id,
    inputs: [{ name: 'INPUT0', datatype: sample.datatype, shape: sample.shape.map(String) }],
    raw_input_contents: [sample.raw],
  };
}

/** The typed-contents field for a datatype (FP16/BF16 have none). */
const CONTENTS_FIELD: Partial<Record<Sample['datatype'], string>> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

function typedRequest(model: string, sample: Sample): Message {
  const field = CONTENTS_FIELD[sample.datatype]!;
  const values =
    sample.datatype === 'BYTES' ? sample.json.map((s) => Buffer.from(String(s), 'utf8')) : sample.json.map((v) => (typeof v === 'string' ? v : v));
  return {
    model_name: model,
    inputs: [{ name: 'INPUT0', datatype: sample.datatype, shape: sample.shape.map(String), contents: { [field]: values } }],
  };
}

describe('server rpcs', () => {
  it('ServerLive, ServerReady and ServerMetadata', async () => {
    expect(await client.unary('ServerLive', {})).toMatchObject({ live: true });
    expect(await client.unary('ServerReady', {})).toMatchObject({ ready: true });
    const meta = await client.unary('ServerMetadata', {});
    expect(meta.name).toBe('infergate');
    expect(meta.extensions).toContain('binary_tensor_data');
  });

  it('ModelReady: true, false, and NOT_FOUND for unknown models', async () => {
    expect(await client.unary('ModelReady', { name: 'linear', version: '' })).toMatchObject({ ready: true });
    expect(await client.unary('ModelReady', { name: 'rest.linear', version: '1' })).toMatchObject({ ready: true });
    expect(await client.unary('ModelReady', { name: 'unready' })).toMatchObject({ ready: false });
    expect((await grpcError(client.unary('ModelReady', { name: 'nope' }))).code).toBe(status.NOT_FOUND);
  });

  it('ModelMetadata under the public name', async () => {
    const meta = await client.unary('ModelMetadata', { name: 'rest.linear' });
    expect(meta.name).toBe('rest.linear');
    expect(meta.inputs).toEqual([{ name: 'INPUT0', datatype: 'FP32', shape: ['-1', '4'] }]);
    const pinned = await client.unary('ModelMetadata', { name: 'linear-v1' });
    expect(pinned.versions).toEqual(['1']);
  });

  it('RepositoryIndex with and without the ready filter', async () => {
    const all = (await client.unary('RepositoryIndex', {})).models as { name: string; state: string }[];
    expect(all.find((m) => m.name === 'linear')?.state).toBe('READY');
    expect(all.find((m) => m.name === 'unready')?.state).toBe('UNAVAILABLE');
    const ready = (await client.unary('RepositoryIndex', { ready: true })).models as { name: string; state: string }[];
    expect(ready.every((m) => m.state === 'READY')).toBe(true);
    expect(ready.length).toBeLessThan(all.length);
  });

  it('rpcs of Triton that the gateway does not serve answer UNIMPLEMENTED', async () => {
    const generic = new grpc.Client(stack.grpcAddress, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      generic.makeUnaryRequest(
        '/inference.GRPCInferenceService/ModelConfig',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (e) => resolve(e as grpc.ServiceError),
      );
    });
    generic.close();
    expect(err.code).toBe(status.UNIMPLEMENTED);
  });
});

describe('ModelInfer: every datatype, raw and typed contents, through a gRPC and a REST backend', () => {
  for (const sample of SAMPLES) {
    for (const prefix of ['', 'rest.']) {
      const model = `${prefix}identity_${sample.datatype.toLowerCase()}`;

      it(`${model}: raw contents come back byte-identical`, async () => {
        const res = await client.unary('ModelInfer', rawRequest(model, sample, 'id-7'));
        expect(res.model_name).toBe(model);
        expect(res.id).toBe('id-7');
        const outputs = res.outputs as OutTensor[];
        expect(outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['OUTPUT0', sample.datatype, sample.shape.map(String)]]);
        const raw = res.raw_output_contents as Buffer[];
        expect(raw).toHaveLength(1);
        expect(raw[0]!.equals(sample.raw)).toBe(true);
      });

      if (CONTENTS_FIELD[sample.datatype]) {
        it(`${model}: typed contents arrive as the same raw bytes`, async () => {
          const res = await client.unary('ModelInfer', typedRequest(model, sample));
          expect((res.raw_output_contents as Buffer[])[0]!.equals(sample.raw)).toBe(true);
        });
      }
    }
  }

  it('linear through the gateway equals the backend called directly', async () => {
    const input = Buffer.alloc(32);
    [1, 2, 3, 4, -0.5, 0.25, 8, -3].forEach((v, i) => input.writeFloatLE(v, i * 4));
    const request = { model_name: 'linear', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['2', '4'] }], raw_input_contents: [input] };
    const want = await direct.unary('ModelInfer', request);
    for (const model of ['linear', 'rest.linear']) {
      const got = await client.unary('ModelInfer', { ...request, model_name: model });
      const byName = (res: Message) =>
        new Map((res.outputs as OutTensor[]).map((o, i) => [o.name, (res.raw_output_contents as Buffer[])[i]!]));
      for (const [name, bytes] of byName(want)) expect(byName(got).get(name)?.equals(bytes), `${model} ${name}`).toBe(true);
    }
  });
});

describe('ModelStreamInfer', () => {
  it('answers each request in order, errors in-band, and the stream goes on', async () => {
    const call = client.raw.ModelStreamInfer!.call(client.raw) as grpc.ClientDuplexStream<Message, Message>;
    const replies: Message[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: Message) => replies.push(m));
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    const sample = SAMPLES.find((s) => s.datatype === 'INT32')!;
    for (let i = 0; i < 20; i++) {
      call.write(i === 5 ? { ...rawRequest('nope', sample, `r${i}`) } : rawRequest('identity_int32', sample, `r${i}`));
    }
    call.end();
    await done;
    expect(replies).toHaveLength(20);
    replies.forEach((reply, i) => {
      const response = reply.infer_response as Message;
      expect(response.id).toBe(`r${i}`);
      if (i === 5) {
        expect(reply.error_message).toMatch(/unknown model 'nope'/);
      } else {
        expect(reply.error_message).toBe('');
        expect((response.raw_output_contents as Buffer[])[0]!.equals(sample.raw)).toBe(true);
      }
    });
  });
});

describe('bad input maps to the right gRPC status', () => {
  const sample = SAMPLES.find((s) => s.datatype === 'FP32')!;

  it('INVALID_ARGUMENT: unknown datatype, shape/data mismatch, raw and typed at once, bad framing', async () => {
    const cases: Message[] = [
      { model_name: 'identity_fp32', inputs: [{ name: 'INPUT0', datatype: 'FLOAT', shape: ['2', '3'] }], raw_input_contents: [sample.raw] },
      { model_name: 'identity_fp32', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['2', '4'] }], raw_input_contents: [sample.raw] },
      {
        model_name: 'identity_fp32',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1', '1'], contents: { fp32_contents: [1] } }],
        raw_input_contents: [Buffer.alloc(4)],
      },
      { model_name: 'identity_bytes', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: ['1', '1'] }], raw_input_contents: [Buffer.from([9, 0, 0, 0, 1])] },
      { model_name: 'a..b', inputs: [] },
    ];
    for (const request of cases) {
      const err = await grpcError(client.unary('ModelInfer', request));
      expect(err.code, err.details).toBe(status.INVALID_ARGUMENT);
      expect(err.details.length).toBeGreaterThan(5);
    }
  });

  it('NOT_FOUND: unknown model or version, whatever the inputs hold', async () => {
    expect((await grpcError(client.unary('ModelInfer', rawRequest('nope', sample)))).code).toBe(status.NOT_FOUND);
    const badAndUnknown = { model_name: 'nope', inputs: [{ name: 'INPUT0', datatype: 'NOPE', shape: ['1'] }] };
    expect((await grpcError(client.unary('ModelInfer', badAndUnknown))).code).toBe(status.NOT_FOUND);
    const pinned = { ...rawRequest('linear-v1', sample), model_version: '2' };
    expect((await grpcError(client.unary('ModelInfer', pinned))).code).toBe(status.NOT_FOUND);
  });

  it('UNAVAILABLE: an unreachable backend, and a model that is not ready', async () => {
    for (const model of ['down', 'rest.down']) {
      const err = await grpcError(client.unary('ModelInfer', rawRequest(model, sample)));
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.details).toMatch(/unreachable/);
    }
    const unready = { model_name: 'unready', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1'] }], raw_input_contents: [Buffer.alloc(4)] };
    expect((await grpcError(client.unary('ModelInfer', unready))).code).toBe(status.UNAVAILABLE);
  });

  it('RESOURCE_EXHAUSTED: a message over the configured limit', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024);
    const request = { model_name: 'identity_uint8', inputs: [{ name: 'INPUT0', datatype: 'UINT8', shape: ['1', String(big.length)] }], raw_input_contents: [big] };
    expect((await grpcError(client.unary('ModelInfer', request))).code).toBe(status.RESOURCE_EXHAUSTED);
    expect(await client.unary('ServerLive', {})).toMatchObject({ live: true });
  });
});
