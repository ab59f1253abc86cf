import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTfServingReference, type TfServingReference } from '../../reference/tfserving/index.js';
import type { Backend, CallOptions, EndpointOptions, TfServingModelOptions } from '../../src/backends/backend.js';
import type { InferRequest } from '../../src/core/inference.js';
import { SAMPLES } from './samples.js';
import { LINEAR_BIAS, closedPort, expectGatewayError, fp32, linearScores, readFp32, readInt64 } from './tfserving.js';

/**
 * What both TF Serving adapters (REST and gRPC) must do against the reference
 * TF Serving server; each adapter's test file runs it and adds its own cases.
 */
export type AdapterFactory = (opts: EndpointOptions & { maxMessageBytes?: number }) => Backend;

export const soon = (ms = 5_000, tfserving?: Partial<TfServingModelOptions>): CallOptions => ({
  deadline: Date.now() + ms,
  ...(tfserving !== undefined ? { model: { tfserving: { signatureName: 'serving_default', restFormat: 'columnar', ...tfserving } } } : {}),
});

export function linearRequest(version: string, rows: readonly (readonly number[])[] = [[1, 2, 3, 4]], extra: Partial<InferRequest> = {}): InferRequest {
  return {
    model: 'linear',
    version,
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows.length, 4], data: fp32(rows.flat()) }],
    ...extra,
  };
}

export function tfServingAdapterSuite(protocol: 'rest' | 'grpc', create: AdapterFactory, formats: readonly ('row' | 'columnar')[]): void {
  describe(`TF Serving ${protocol} adapter against the reference TF Serving`, () => {
    let ref: TfServingReference;
    let backend: Backend;

    beforeAll(async () => {
      ref = await startTfServingReference({ host: '127.0.0.1' });
      backend = create({ endpoint: protocol === 'rest' ? ref.httpEndpoint : ref.grpcEndpoint, maxConnections: 4 });
    });
    afterAll(async () => {
      await backend.close();
      await ref.close();
    });

    it('names itself', () => {
      expect(backend).toMatchObject({ kind: 'tfserving', protocol });
    });

    for (const format of formats) {
      for (const s of SAMPLES) {
        it(`identity_${s.datatype.toLowerCase()}${formats.length > 1 ? ` (${format})` : ''}: returns the input bytes exactly`, async () => {
          const req: InferRequest = {
            model: `identity_${s.datatype.toLowerCase()}`,
            version: '',
            id: 'r-1',
            inputs: [{ name: 'INPUT0', datatype: s.datatype, shape: [...s.shape], data: s.raw }],
          };
          const resp = await backend.infer(req, soon(5_000, { restFormat: format }));
          expect(resp).toMatchObject({ model: req.model, version: '1', id: 'r-1' });
          expect(resp.outputs).toHaveLength(1);
          expect(resp.outputs[0]).toMatchObject({ name: 'OUTPUT0', datatype: s.datatype, shape: [...s.shape] });
          expect(resp.outputs[0]!.data.equals(s.raw)).toBe(true);
        });
      }
    }

    it('binary strings survive both ways (the bytes_out signature answers OUTPUT0_bytes)', async () => {
      const data = Buffer.from([0, 0, 0, 0, 3, 0, 0, 0, 0xff, 0x00, 0xc3, 2, 0, 0, 0, 0x68, 0x69]);
      const req: InferRequest = { model: 'identity_bytes', version: '', inputs: [{ name: 'INPUT0', datatype: 'BYTES', shape: [1, 3], data }] };
      const resp = await backend.infer(req, soon(5_000, { signatureName: 'bytes_out' }));
      expect(resp.outputs[0]).toMatchObject({ name: 'OUTPUT0_bytes', datatype: 'BYTES', shape: [1, 3] });
      expect(resp.outputs[0]!.data.equals(data)).toBe(true);
    });

    it('linear: versions and labels reach the version they name', async () => {
      const x = [1, 2, 3, 4];
      for (const [version, served] of [['1', '1'], ['2', '2'], ['stable', '1'], ['canary', '2'], ['', '2']] as const) {
        const resp = await backend.infer(linearRequest(version, [x, [0.5, -1, 2, 0]]), soon());
        expect(resp.version, `version '${version}'`).toBe(served);
        const scores = resp.outputs.find((o) => o.name === 'SCORES')!;
        expect(scores.shape).toEqual([2, 3]);
        expect(readFp32(scores.data)).toEqual([...linearScores(x, LINEAR_BIAS[served]!), ...linearScores([0.5, -1, 2, 0], LINEAR_BIAS[served]!)]);
        const classes = resp.outputs.find((o) => o.name === 'CLASS')!;
        expect(classes).toMatchObject({ datatype: 'INT64', shape: [2] });
      }
    });

    it('asks for the outputs requested, in that order', async () => {
      const resp = await backend.infer(linearRequest('1', [[1, 2, 3, 4]], { outputs: [{ name: 'CLASS' }] }), soon());
      expect(resp.outputs.map((o) => o.name)).toEqual(['CLASS']);
      const scores = linearScores([1, 2, 3, 4], LINEAR_BIAS['1']!);
      expect(readInt64(resp.outputs[0]!.data)).toEqual([BigInt(scores.indexOf(Math.max(...scores)))]);
    });

    it("selects the model's configured signature, and a request's signature_name over it", async () => {
      const configured = await backend.infer(linearRequest('1'), soon(5_000, { signatureName: 'scores_only' }));
      expect(configured.outputs.map((o) => o.name)).toEqual(['SCORES']);
      const asked = await backend.infer(linearRequest('1', [[1, 2, 3, 4]], { parameters: { signature_name: 'scores_only' } }), soon());
      expect(asked.outputs.map((o) => o.name)).toEqual(['SCORES']);
      await expectGatewayError(
        backend.infer(linearRequest('1', [[1, 2, 3, 4]], { parameters: { signature_name: 'nope' } }), soon()),
        'FAILED_PRECONDITION',
        /nope/,
      );
    });

    it('simple: two inputs, two outputs', async () => {
      const a = Buffer.alloc(64);
      const b = Buffer.alloc(64);
      for (let i = 0; i < 16; i++) {
        a.writeInt32LE(i, i * 4);
        b.writeInt32LE(1, i * 4);
      }
      const req: InferRequest = {
        model: 'simple',
        version: '',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: a },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: b },
        ],
      };
      for (const format of formats) {
        const resp = await backend.infer(req, soon(5_000, { restFormat: format }));
        const byName = Object.fromEntries(resp.outputs.map((o) => [o.name, o]));
        expect(byName.OUTPUT0!.data.readInt32LE(60)).toBe(16);
        expect(byName.OUTPUT1!.data.readInt32LE(60)).toBe(14);
      }
    });

    it('modelReady: true, false while loading, NOT_FOUND for an unknown model or version', async () => {
      expect(await backend.modelReady('linear', '', soon())).toBe(true);
      expect(await backend.modelReady('linear', '1', soon())).toBe(true);
      expect(await backend.modelReady('linear', 'canary', soon())).toBe(true);
      expect(await backend.modelReady('unready', '', soon())).toBe(false);
      await expectGatewayError(backend.modelReady('nope', '', soon()), 'NOT_FOUND', /Could not find any versions of model nope/);
      await expectGatewayError(backend.modelReady('linear', '9', soon()), 'NOT_FOUND', /version 9/);
    });

    it('modelMetadata: the configured signature as v2 metadata, with the served version', async () => {
      expect(await backend.modelMetadata('linear', '', soon())).toEqual({
        name: 'linear',
        versions: ['2'],
        platform: 'tensorflow_serving',
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
        outputs: [
          { name: 'SCORES', datatype: 'FP32', shape: [-1, 3] },
          { name: 'CLASS', datatype: 'INT64', shape: [-1] },
        ],
      });
      expect((await backend.modelMetadata('linear', 'stable', soon())).versions).toEqual(['1']);
      const scoresOnly = await backend.modelMetadata('linear', '1', soon(5_000, { signatureName: 'scores_only' }));
      expect(scoresOnly.outputs.map((o) => o.name)).toEqual(['SCORES']);
      await expectGatewayError(backend.modelMetadata('linear', '', soon(5_000, { signatureName: 'nope' })), 'FAILED_PRECONDITION', /no signature 'nope' \(its signatures: serving_default, scores_only\)/);
      await expectGatewayError(backend.modelMetadata('nope', '', soon()), 'NOT_FOUND', /Servable not found for request: Latest\(nope\)/);
    });

    it('serverReady', async () => {
      expect(await backend.serverReady(soon())).toBe(true);
    });

    it("passes the backend's own errors on with their message", async () => {
      await expectGatewayError(backend.infer({ ...linearRequest(''), model: 'nope' }, soon()), 'NOT_FOUND', /Servable not found for request: Latest\(nope\)/);
      await expectGatewayError(backend.infer(linearRequest('7'), soon()), 'NOT_FOUND', /Specific\(linear, 7\)/);
      await expectGatewayError(backend.infer(linearRequest('beta'), soon()), 'INVALID_ARGUMENT', /Unrecognized servable version label: beta/);
      await expectGatewayError(
        backend.infer({ model: 'simple', version: '', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Buffer.alloc(64) }] }, soon()),
        'INVALID_ARGUMENT',
        /input size does not match signature.*Missing but required: \{INPUT1\}/,
      );
      await expectGatewayError(
        backend.infer({ model: 'unready', version: '', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1], data: fp32([1]) }] }, soon()),
        'UNAVAILABLE',
        /is not available: version 1 is LOADING/,
      );
    });

    it('refuses an input of the wrong datatype', async () => {
      const req: InferRequest = { model: 'linear', version: '1', inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 4], data: Buffer.alloc(16) }] };
      await expectGatewayError(backend.infer(req, soon()), 'INVALID_ARGUMENT', /INT32|int32/);
    });

    it('fails with UNAVAILABLE after close()', async () => {
      const b = create({ endpoint: protocol === 'rest' ? ref.httpEndpoint : ref.grpcEndpoint, maxConnections: 1 });
      expect(await b.serverReady(soon())).toBe(true);
      await b.close();
      await expectGatewayError(b.infer(linearRequest('1'), soon()), 'UNAVAILABLE', /closed/);
    });
  });

  describe(`TF Serving ${protocol} adapter failures`, () => {
    it('an unreachable endpoint is UNAVAILABLE, quickly', async () => {
      const endpoint = `127.0.0.1:${await closedPort()}`;
      const backend = create({ endpoint, maxConnections: 1 });
      try {
        const started = Date.now();
        await expectGatewayError(backend.infer(linearRequest('1'), soon(10_000)), 'UNAVAILABLE', new RegExp(`backend tfserving ${endpoint} unreachable: .*ECONNREFUSED`));
        await expectGatewayError(backend.serverReady(soon(10_000)), 'UNAVAILABLE', /unreachable/);
        await expectGatewayError(backend.modelReady('linear', '', soon(10_000)), 'UNAVAILABLE', /unreachable/);
        expect(Date.now() - started).toBeLessThan(2_000);
      } finally {
        await backend.close();
      }
    });

    it('a backend slower than the deadline is DEADLINE_EXCEEDED, on time', async () => {
      const slow = await startTfServingReference({ host: '127.0.0.1', latencyMs: 1_000 });
      const backend = create({ endpoint: protocol === 'rest' ? slow.httpEndpoint : slow.grpcEndpoint, maxConnections: 1 });
      try {
        const started = Date.now();
        await expectGatewayError(backend.infer(linearRequest('1'), soon(200)), 'DEADLINE_EXCEEDED', /did not answer within/);
        expect(Date.now() - started).toBeLessThan(900);
      } finally {
        await backend.close();
        await slow.close();
      }
    });
  });
}
