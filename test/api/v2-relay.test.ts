import { Writable } from 'node:stream';
import { Pool } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { TritonRestBackend } from '../../src/backends/triton/rest.js';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/logger.js';
import { call, postBinary, splitBinaryReply, type HttpReply } from '../helpers/http.js';

/**
 * The v2 REST relay: for a model whose every leaf is a Triton REST backend
 * under the model's own name, with nothing that decodes the request on the
 * way, the client's body goes to Triton as it is and Triton's answer comes back
 * as it is, through the same routing, breakers and retries. Everything else
 * is decoded and re-encoded as before. A spy on the Triton REST adapter tells
 * which way each request went; the reference Triton answers over real sockets.
 */

let triton: TritonReference;
let gateway: RunningGateway;
let viaGateway: Pool;
let direct: Pool;

const LINEAR = JSON.stringify({ id: 'req-7', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });

/** What the gateway logged while loading its config (warnings about models that cannot relay). */
const logged: string[] = [];

beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
  const rest = { backend: 'rest' };
  const relayed = { backend: 'rest', relay: true };
  const logSink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged.push(chunk.toString('utf8'));
      done();
    },
  });
  gateway = await startGateway(
    validateConfig({
      server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, request_timeout_ms: 5000, log_level: 'silent' },
      auth: { enabled: false },
      backends: {
        rest: { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint] },
        grpc: { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] },
        // Nothing listens on port 1: connections are refused at once.
        'nowhere-rest': { kind: 'triton', protocol: 'rest', endpoints: ['127.0.0.1:1'] },
      },
      targets: { mirror: rest },
      models: {
        // Relayed.
        linear: relayed,
        identity_fp32: { fallback: [{ backend: 'nowhere-rest' }, rest], fallback_on: ['connect_failure', 'unavailable'], relay: true },
        identity_int16: { match: [{ when: { header: 'x-tenant', equals: 'acme' }, ...rest }], default: rest, relay: true },
        identity_uint32: { ...relayed, version: '1' },
        // Decoded: not asked for; a cache; asked for but with a gRPC leaf, a rule on parameters, a shadow, an
        // experiment, another name on the backend.
        identity_int8: rest,
        identity_int32: { ...rest, cache: { ttl_ms: 60_000 } },
        identity_int64: { fallback: [{ backend: 'nowhere-rest' }, { backend: 'grpc' }], fallback_on: ['connect_failure', 'unavailable'], relay: true },
        simple: { match: [{ when: { parameter: 'tier', equals: 'gold' }, ...rest }], default: rest, relay: true },
        identity_uint8: { ...relayed, shadow: { percent: 100, target: 'mirror' } },
        identity_uint16: relayed,
        renamed: { backend: 'rest', model: 'identity_bool', relay: true },
      },
      experiments: {
        'uint16-ab': { model: 'identity_uint16', key: { header: 'x-user' }, control: 'a', arms: { a: { weight: 50, ...rest }, b: { weight: 50, ...rest } } },
      },
    }),
    createLogger('warn', logSink),
  );
  viaGateway = new Pool(`http://127.0.0.1:${gateway.httpPort}`, { connections: 4 });
  direct = new Pool(`http://${triton.httpEndpoint}`, { connections: 4 });
});

afterAll(async () => {
  await viaGateway?.close();
  await direct?.close();
  await gateway?.close(1000);
  await triton?.close();
});

afterEach(() => {
  vi.restoreAllMocks();
});

function spies() {
  return { relay: vi.spyOn(TritonRestBackend.prototype, 'relayV2Rest'), infer: vi.spyOn(TritonRestBackend.prototype, 'infer') };
}

function postJsonText(pool: Pool, model: string, body: string, headers: Record<string, string> = {}): Promise<HttpReply> {
  return call(pool, 'POST', `/v2/models/${model}/infer`, body, { 'content-type': 'application/json', ...headers });
}

function identity(datatype: string, data: unknown[]): string {
  return JSON.stringify({ inputs: [{ name: 'INPUT0', datatype, shape: [1, data.length], data }] });
}

describe('v2 REST relay', () => {
  it("answers Triton's own bytes for a relayable model, with the gateway's headers", async () => {
    const s = spies();
    const through = await postJsonText(viaGateway, 'linear', LINEAR);
    const straight = await postJsonText(direct, 'linear', LINEAR);
    expect(through.status, through.text()).toBe(200);
    expect(s.relay).toHaveBeenCalledTimes(1);
    expect(s.infer).not.toHaveBeenCalled();
    expect(through.body.equals(straight.body)).toBe(true);
    expect(through.json<{ model_name: string; id: string }>()).toMatchObject({ model_name: 'linear', id: 'req-7' });
    expect(Number(through.headers['content-length'])).toBe(through.body.length);
    expect(through.headers['x-infergate-target']).toBe('models.linear');
    expect(through.headers['x-infergate-attempts']).toBe('1');
    expect(String(through.headers['x-request-id'])).not.toBe('');
  });

  it('relays the binary tensor extension both ways, with Inference-Header-Content-Length', async () => {
    const s = spies();
    const values = Float32Array.from([0.5, -1.25, 3e-8, 65504]);
    const raw = Buffer.from(values.buffer);
    const header = {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: raw.length } }],
      parameters: { binary_data_output: true },
    };
    const reply = await postBinary(viaGateway, '/v2/models/linear/infer', header, [raw]);
    expect(reply.status, reply.text()).toBe(200);
    expect(s.relay).toHaveBeenCalledTimes(1);
    const straight = await postBinary(direct, '/v2/models/linear/infer', header, [raw]);
    expect(reply.headers['inference-header-content-length']).toBe(straight.headers['inference-header-content-length']);
    expect(reply.body.equals(straight.body)).toBe(true);
    const { header: answer, blobs } = splitBinaryReply(reply);
    const sizes = (answer.outputs as { parameters: { binary_data_size: number } }[]).map((o) => o.parameters.binary_data_size);
    expect(blobs.length).toBe(sizes.reduce((a, b) => a + b, 0));
  });

  it("answers the backend's refusal of a bad body with its status and message as {\"error\"}", async () => {
    const s = spies();
    const malformed = await postJsonText(viaGateway, 'linear', '{"inputs": [');
    expect(malformed.status).toBe(400);
    expect(String(malformed.headers['content-type'])).toContain('application/json');
    expect(malformed.json<{ error: string }>().error).toMatch(/failed to parse the request JSON/);
    const wrongShape = await postJsonText(viaGateway, 'linear', identity('FP32', [1, 2, 3]).replace('"INPUT0"', '"NOPE"'));
    expect(wrongShape.status).toBe(400);
    expect(wrongShape.json<{ error: string }>().error).toMatch(/NOPE/);
    expect(s.relay).toHaveBeenCalledTimes(2);
    expect(s.infer).not.toHaveBeenCalled();
  });

  it('still refuses a bad Inference-Header-Content-Length itself, before any backend call', async () => {
    const s = spies();
    const reply = await call(viaGateway, 'POST', '/v2/models/linear/infer', LINEAR, {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': '99999',
    });
    expect(reply.status).toBe(400);
    expect(reply.json<{ error: string }>().error).toMatch(/Inference-Header-Content-Length/);
    expect(s.relay).not.toHaveBeenCalled();
  });

  it('falls back through the tree past a leaf that is down, as for decoded requests', async () => {
    const s = spies();
    const reply = await postJsonText(viaGateway, 'identity_fp32', identity('FP32', [1.5, 2.5]));
    expect(reply.status, reply.text()).toBe(200);
    expect(reply.json<{ outputs: { data: number[] }[] }>().outputs[0]!.data).toEqual([1.5, 2.5]);
    expect(reply.headers['x-infergate-target']).toBe('models.identity_fp32.fallback.1');
    // Refused by the first leaf's endpoint (2 calls), or skipped there once the health checks know it is down (1).
    expect(Number(reply.headers['x-infergate-attempts'])).toBe(s.relay.mock.calls.length);
    expect(s.relay.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(s.infer).not.toHaveBeenCalled();
  });

  it('sends the request id and a traceparent on, and asks for the pinned version', async () => {
    const s = spies();
    const reply = await postJsonText(viaGateway, 'identity_uint32', identity('UINT32', [4_000_000_000, 1]), { 'x-request-id': 'relay-abc' });
    expect(reply.status, reply.text()).toBe(200);
    expect(reply.json<{ model_version: string; outputs: { data: number[] }[] }>()).toMatchObject({ model_version: '1', outputs: [{ data: [4_000_000_000, 1] }] });
    expect(s.relay).toHaveBeenCalledTimes(1);
    expect(s.relay.mock.calls[0]!.slice(0, 2)).toEqual(['identity_uint32', '1']);
    expect(triton.stats.lastHeaders?.['x-request-id']).toBe('relay-abc');
    expect(triton.stats.lastHeaders?.['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    const other = await postJsonText(viaGateway, 'identity_uint32/versions/2', identity('UINT32', [1]));
    expect(other.status).toBe(404);
  });

  it("answers 504 at the client's deadline when Triton is slow, as for decoded requests", async () => {
    const s = spies();
    triton.setFault({ kind: 'latency', ms: 1_000 });
    try {
      const reply = await postJsonText(viaGateway, 'linear', LINEAR, { 'x-infergate-timeout-ms': '100' });
      expect(reply.status).toBe(504);
      expect(reply.json<{ error: string }>().error).toMatch(/did not answer within/);
      expect(s.relay).toHaveBeenCalledTimes(1);
    } finally {
      triton.setFault(undefined);
    }
  });

  it('relays a model whose rules read only headers, whichever branch a request takes', async () => {
    const s = spies();
    const plain = await postJsonText(viaGateway, 'identity_int16', identity('INT16', [7, -7]));
    const acme = await postJsonText(viaGateway, 'identity_int16', identity('INT16', [7, -7]), { 'x-tenant': 'acme' });
    expect([plain.status, acme.status]).toEqual([200, 200]);
    expect(plain.headers['x-infergate-target']).toBe('models.identity_int16.default');
    expect(acme.headers['x-infergate-target']).toBe('models.identity_int16.match.0');
    expect(s.relay).toHaveBeenCalledTimes(2);
  });

  it.each([
    ['no relay: true', 'identity_int8', identity('INT8', [1, -2]), {}],
    ['a response cache', 'identity_int32', identity('INT32', [1, 2]), {}],
    ['a gRPC leaf in its tree', 'identity_int64', identity('INT64', [1, 2]), {}],
    ['a rule on request parameters', 'simple', JSON.stringify({ parameters: { tier: 'gold' }, inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(1) }, { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: Array(16).fill(2) }] }), {}],
    ['shadow traffic', 'identity_uint8', identity('UINT8', [1, 2]), {}],
    ['an experiment', 'identity_uint16', identity('UINT16', [1, 2]), { 'x-user': 'u-1' }],
    ['another name on its backend', 'renamed', identity('BOOL', [true, false]), {}],
  ])('decodes the request of a model with %s', async (_why, model, body, headers) => {
    const s = spies();
    const reply = await postJsonText(viaGateway, model, body, headers);
    expect(reply.status, reply.text()).toBe(200);
    expect(reply.json<{ model_name: string }>().model_name).toBe(model);
    expect(s.relay).not.toHaveBeenCalled();
  });

  it('marks routes relayable when the config is compiled, not per request, and says why a relay: true does not apply', () => {
    const router = gateway.service.currentRuntime.router;
    const relayable = Object.fromEntries([...router.list()].map((r) => [r.name, r.relayable]));
    expect(relayable).toEqual({
      linear: true,
      identity_fp32: true,
      identity_int16: true,
      identity_uint32: true,
      identity_int8: false,
      identity_int32: false,
      identity_int64: false,
      simple: false,
      // Relayable routes: their shadow and experiment keep them decoded at request time (InferenceService.relay).
      identity_uint8: true,
      identity_uint16: true,
      renamed: false,
    });
    const warnings = logged.map((line) => JSON.parse(line) as { model: string; reason: string; msg: string });
    const reasons = Object.fromEntries(warnings.filter((w) => w.msg.startsWith('relay: true does not apply')).map((w) => [w.model, w.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['identity_int64', 'identity_uint16', 'identity_uint8', 'renamed', 'simple']);
    expect(reasons['identity_int64']).toMatch(/backend 'grpc' \(triton over grpc\)/);
    expect(reasons['simple']).toMatch(/reads request parameters/);
    expect(reasons['identity_uint8']).toMatch(/shadow/);
    expect(reasons['identity_uint16']).toMatch(/experiment/);
    expect(reasons['renamed']).toMatch(/calls model 'identity_bool'/);
  });

  it('refuses relay: true beside cache, coalesce or batching in the config, naming the key', () => {
    const backends = { rest: { kind: 'triton', protocol: 'rest', endpoints: ['127.0.0.1:8000'] } };
    for (const extra of [{ cache: { ttl_ms: 1000 } }, { coalesce: true }, { batching: { max_batch_size: 4 } }]) {
      const attempt = () => validateConfig({ backends, models: { m: { backend: 'rest', relay: true, ...extra } } });
      expect(attempt).toThrow(ConfigError);
      expect(attempt).toThrow(/models\.m\.relay: relay sends the client's bytes as they are, and (cache, coalesce|coalesce|batching) need/);
    }
    expect(validateConfig({ backends, models: { m: { backend: 'rest', relay: true } } }).models['m']!.serving).toEqual({ coalesce: false, relay: true });
  });
});
