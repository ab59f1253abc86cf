import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcError, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { postBinary, postJson, rawDataText, splitBinaryReply } from '../helpers/http.js';
import { SAMPLES } from '../helpers/samples.js';
import { grpc, startTfStack, type TfStack } from '../helpers/tfserving-stack.js';

/**
 * KServe v2 clients (REST and gRPC) calling models that TF Serving serves,
 * through the TF Serving adapters over REST and over gRPC: every datatype TF
 * supports arrives back with exactly the bytes sent.
 */
let stack: TfStack;
let client: V2Client;
beforeAll(async () => {
  stack = await startTfStack();
  client = v2Client(stack.grpcAddress);
});
afterAll(async () => {
  client?.close();
  await stack?.close();
});

interface OutTensor {
  name: string;
  datatype: string;
  shape: (string | number)[];
}

for (const prefix of ['tf', 'tfrest']) {
  describe(`v2 in, TF Serving over ${prefix === 'tf' ? 'gRPC' : 'REST'} behind`, () => {
    for (const s of SAMPLES) {
      const model = `${prefix}.identity_${s.datatype.toLowerCase()}`;

      it(`${model}: gRPC ModelInfer, raw contents byte-identical`, async () => {
        const reply = await client.unary('ModelInfer', {
          model_name: model,
          id: 'g-1',
          inputs: [{ name: 'INPUT0', datatype: s.datatype, shape: s.shape.map(String) }],
          raw_input_contents: [s.raw],
        });
        expect(reply).toMatchObject({ model_name: model, model_version: '1', id: 'g-1' });
        const [out] = reply.outputs as OutTensor[];
        expect(out).toMatchObject({ name: 'OUTPUT0', datatype: s.datatype, shape: s.shape.map(String) });
        expect((reply.raw_output_contents as Buffer[])[0]!.equals(s.raw)).toBe(true);
      });

      it(`${model}: REST binary in, binary out, byte-identical`, async () => {
        const reply = await postBinary(
          stack.http,
          `/v2/models/${model}/infer`,
          {
            inputs: [{ name: 'INPUT0', datatype: s.datatype, shape: s.shape, parameters: { binary_data_size: s.raw.length } }],
            outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }],
          },
          [s.raw],
        );
        expect(reply.status, reply.text()).toBe(200);
        const { header, blobs } = splitBinaryReply(reply);
        expect(header).toMatchObject({ model_name: model, outputs: [{ name: 'OUTPUT0', datatype: s.datatype, shape: [...s.shape] }] });
        expect(blobs.equals(s.raw)).toBe(true);
      });

      it(`${model}: REST JSON in, JSON out, values unchanged`, async () => {
        const reply = await postJson(stack.http, `/v2/models/${model}/infer`, {
          inputs: [{ name: 'INPUT0', datatype: s.datatype, shape: s.shape, data: s.json }],
        });
        expect(reply.status, reply.text()).toBe(200);
        expect(rawDataText(reply.text(), 'OUTPUT0').split(',').length).toBe(s.json.length);
        if (s.datatype === 'INT64' || s.datatype === 'UINT64') {
          expect(rawDataText(reply.text(), 'OUTPUT0').split(',')).toEqual(s.json.map(String));
        }
      });
    }

    it(`${prefix}.linear: a v2 client picks a TF signature with the signature_name parameter`, async () => {
      const x = Buffer.alloc(16);
      [1, 2, 3, 4].forEach((v, i) => x.writeFloatLE(v, i * 4));
      const reply = await client.unary('ModelInfer', {
        model_name: `${prefix}.linear`,
        model_version: '1',
        parameters: { signature_name: { string_param: 'scores_only' } },
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1', '4'] }],
        raw_input_contents: [x],
      });
      expect((reply.outputs as OutTensor[]).map((o) => o.name)).toEqual(['SCORES']);
    });

    it(`${prefix}: model metadata and readiness over v2`, async () => {
      const meta = await client.unary('ModelMetadata', { name: `${prefix}.linear` });
      expect(meta).toMatchObject({
        name: `${prefix}.linear`,
        versions: ['2'],
        platform: 'tensorflow_serving',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['-1', '4'] }],
      });
      expect(await client.unary('ModelReady', { name: `${prefix}.linear` })).toMatchObject({ ready: true });
      expect(await client.unary('ModelReady', { name: `${prefix}.unready` })).toMatchObject({ ready: false });
    });

    it(`${prefix}: a TF error reaches the v2 client with its code and message`, async () => {
      const request: Message = {
        model_name: `${prefix}.linear`,
        model_version: '7',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1', '4'] }],
        raw_input_contents: [Buffer.alloc(16)],
      };
      const err = await grpcError(client.unary('ModelInfer', request));
      expect([err.code, err.details]).toEqual([grpc.status.NOT_FOUND, 'Servable not found for request: Specific(linear, 7)']);
    });
  });
}
