import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../reference/torchserve/index.js';
import type { Backend, EndpointOptions } from '../../src/backends/backend.js';
import type { InferResponse } from '../../src/core/inference.js';
import {
  A16,
  ALL_BYTES,
  B16,
  LINEAR_TYPES,
  ROWS,
  bodyRequest,
  bytesElement,
  bytesOf,
  collect,
  expectGatewayError,
  fp32,
  int64,
  linear,
  linearRequest,
  simpleRequest,
  soon,
} from './torchserve.js';

export type AdapterFactory = (opts: EndpointOptions & { maxMessageBytes?: number }) => Backend;

const output = (resp: InferResponse, name: string) => resp.outputs.find((t) => t.name === name);

/**
 * What both TorchServe adapters (REST and gRPC) must do against the reference
 * TorchServe over real sockets; each adapter's test file runs it and adds its
 * own cases (readiness, metadata and error details differ by protocol).
 */
export function torchServeAdapterSuite(protocol: 'rest' | 'grpc', create: AdapterFactory): void {
  describe(`TorchServe ${protocol} adapter against the reference TorchServe`, () => {
    let ref: TorchServeReference;
    let backend: Backend;

    beforeAll(async () => {
      ref = await startTorchServeReference({ host: '127.0.0.1' });
      backend = create({ endpoint: protocol === 'rest' ? ref.httpEndpoint : ref.grpcEndpoint, maxConnections: 4 });
    });
    afterAll(async () => {
      await backend.close();
      await ref.close();
    });

    it('names itself', () => {
      expect(backend).toMatchObject({ kind: 'torchserve', protocol });
    });

    it('linear: SCORES and CLASS equal the float32 math, typed by outputTypes', async () => {
      const resp = await backend.infer(linearRequest(ROWS, '', { id: 'req-1' }), soon(5_000, LINEAR_TYPES));
      const expected = linear(ROWS);
      expect(resp).toMatchObject({ model: 'linear', version: '', id: 'req-1' });
      expect(output(resp, 'SCORES')).toMatchObject({ datatype: 'FP32', shape: [3, 3] });
      expect(output(resp, 'SCORES')!.data.equals(fp32(expected.SCORES.flat()))).toBe(true);
      expect(output(resp, 'CLASS')).toMatchObject({ datatype: 'INT64', shape: [3] });
      expect(output(resp, 'CLASS')!.data.equals(int64(expected.CLASS))).toBe(true);
    });

    it('linear: each version answers with its own bias; no version is the default (2.0)', async () => {
      const rows = [[1, 2, 3, 4]];
      for (const version of ['1.0', '2.0', '']) {
        const resp = await backend.infer(linearRequest(rows, version), soon(5_000, LINEAR_TYPES));
        expect(resp.version).toBe(version);
        expect(output(resp, 'SCORES')!.data.equals(fp32(linear(rows, version || '2.0').SCORES.flat()))).toBe(true);
      }
    });

    it('simple: two inputs, each under its own key, give the int32 sums and differences', async () => {
      const resp = await backend.infer(simpleRequest(), soon());
      expect(resp.outputs.map((t) => [t.name, t.datatype, t.shape])).toEqual([
        ['OUTPUT0', 'INT64', [1, 16]],
        ['OUTPUT1', 'INT64', [1, 16]],
      ]);
      expect(output(resp, 'OUTPUT0')!.data.equals(int64(A16.map((a, i) => (a + B16[i]!) | 0)))).toBe(true);
      expect(output(resp, 'OUTPUT1')!.data.equals(int64(A16.map((a, i) => (a - B16[i]!) | 0)))).toBe(true);
    });

    it('several one-element BYTES inputs reach the handler as fields of their own (form fields / map entries)', async () => {
      const field = (name: string, values: number[]) => ({
        name,
        datatype: 'BYTES' as const,
        shape: [1],
        data: bytesElement(JSON.stringify([values])),
      });
      const resp = await backend.infer({ model: 'simple', version: '', inputs: [field('INPUT0', A16), field('INPUT1', B16)] }, soon());
      expect(output(resp, 'OUTPUT0')!.data.equals(int64(A16.map((a, i) => (a + B16[i]!) | 0)))).toBe(true);
    });

    it('requested outputs filter the answer; an unknown one is INVALID_ARGUMENT', async () => {
      const resp = await backend.infer(linearRequest(ROWS, '', { outputs: [{ name: 'CLASS' }] }), soon());
      expect(resp.outputs.map((t) => t.name)).toEqual(['CLASS']);
      await expectGatewayError(backend.infer(linearRequest(ROWS, '', { outputs: [{ name: 'NOPE' }] }), soon()), 'INVALID_ARGUMENT', /NOPE/);
    });

    it('echo: binary bytes (all 256 values) go raw and come back exactly', async () => {
      const resp = await backend.infer(bodyRequest('echo', ALL_BYTES, 'application/x-custom'), soon());
      expect(resp.outputs).toHaveLength(1);
      expect(resp.outputs[0]!.name).toBe('OUTPUT0');
      expect(bytesOf(resp.outputs[0]).equals(ALL_BYTES)).toBe(true);
      // Only REST carries a content type back.
      expect(resp.outputs[0]!.parameters?.content_type).toBe(protocol === 'rest' ? 'application/x-custom' : undefined);
    });

    it('raw mode: a UINT8 tensor goes as its bytes; bytes mode returns even JSON untouched', async () => {
      const raw = await backend.infer(
        { model: 'echo', version: '', inputs: [{ name: 'img', datatype: 'UINT8', shape: [ALL_BYTES.length], data: ALL_BYTES }] },
        soon(5_000, { request: 'raw', outputName: 'IMAGE' }),
      );
      expect(raw.outputs[0]!.name).toBe('IMAGE');
      expect(bytesOf(raw.outputs[0]).equals(ALL_BYTES)).toBe(true);
      const doc = '{"a": [1.50, 2]}';
      const bytes = await backend.infer(bodyRequest('echo', doc, 'application/json'), soon(5_000, { response: 'bytes' }));
      expect(bytesOf(bytes.outputs[0]).toString()).toBe(doc);
    });

    it('streams a streaming handler in parts, in order, as they arrive', async () => {
      const words = ['alpha', 'beta', 'gamma', 'delta'];
      const stream = backend.inferStream!(bodyRequest('stream_tokens', JSON.stringify({ text: words.join(' ') })), soon());
      const { parts, times } = await collect(stream);
      expect(parts.map((p) => bytesOf(p.outputs[0]).toString())).toEqual(words);
      // The reference paces parts 15 ms apart: the first came well before the last.
      expect(times[times.length - 1]! - times[0]!).toBeGreaterThanOrEqual(20);
    });

    it('a non-streaming answer through inferStream is one part', async () => {
      const { parts } = await collect(backend.inferStream!(linearRequest(ROWS), soon(5_000, LINEAR_TYPES)));
      expect(parts).toHaveLength(1);
      expect(output(parts[0]!, 'SCORES')!.data.equals(fp32(linear(ROWS).SCORES.flat()))).toBe(true);
    });

    it('serverReady: Ping says Healthy', async () => {
      expect(await backend.serverReady(soon())).toBe(true);
    });

    it("the handler's 400 is INVALID_ARGUMENT with TorchServe's message", async () => {
      await expectGatewayError(backend.infer(bodyRequest('linear', 'not json'), soon()), 'INVALID_ARGUMENT', /request body is not valid JSON/);
    });

    it('an unknown model or version is NOT_FOUND with the message passed on', async () => {
      await expectGatewayError(backend.infer(bodyRequest('nosuch', '{}'), soon()), 'NOT_FOUND', 'Model not found: nosuch');
      await expectGatewayError(
        backend.infer(linearRequest(ROWS, '9.9'), soon()),
        'NOT_FOUND',
        'Model version: 9.9 does not exist for model: linear',
      );
    });

    it('a failing handler is UNAVAILABLE "Prediction failed"; a model without workers UNAVAILABLE', async () => {
      await expectGatewayError(backend.infer(bodyRequest('failing', '{}'), soon()), 'UNAVAILABLE', 'Prediction failed');
      await expectGatewayError(backend.infer(bodyRequest('unready', '{}'), soon()), 'UNAVAILABLE', /has no worker/);
      await expectGatewayError(collect(backend.inferStream!(bodyRequest('failing', '{}'), soon())), 'UNAVAILABLE', 'Prediction failed');
    });

    it('sends the request id on', async () => {
      await backend.infer(linearRequest(), { ...soon(), requestId: 'trace-42' });
      expect(ref.stats.lastRequest?.headers['x-request-id']).toBe('trace-42');
    });

    it('misses the deadline as DEADLINE_EXCEEDED', async () => {
      const slow = await startTorchServeReference({ host: '127.0.0.1', latencyMs: 1_000 });
      const late = create({ endpoint: protocol === 'rest' ? slow.httpEndpoint : slow.grpcEndpoint, maxConnections: 1 });
      try {
        const started = Date.now();
        await expectGatewayError(late.infer(linearRequest(), soon(150)), 'DEADLINE_EXCEEDED');
        await expectGatewayError(collect(late.inferStream!(linearRequest(), soon(150))), 'DEADLINE_EXCEEDED');
        expect(Date.now() - started).toBeLessThan(900);
      } finally {
        await late.close();
        await slow.close();
      }
    });

    it('an endpoint nobody listens on is UNAVAILABLE', async () => {
      const down = create({ endpoint: '127.0.0.1:1', maxConnections: 1 });
      try {
        await expectGatewayError(down.infer(linearRequest(), soon()), 'UNAVAILABLE', /unreachable/);
        await expectGatewayError(collect(down.inferStream!(linearRequest(), soon())), 'UNAVAILABLE', /unreachable/);
        await expectGatewayError(down.serverReady(soon()), 'UNAVAILABLE');
      } finally {
        await down.close();
      }
    });

    it('a closed adapter is UNAVAILABLE', async () => {
      const closed = create({ endpoint: protocol === 'rest' ? ref.httpEndpoint : ref.grpcEndpoint, maxConnections: 1 });
      await closed.close();
      await expectGatewayError(closed.infer(linearRequest(), soon()), 'UNAVAILABLE');
    });
  });
}
