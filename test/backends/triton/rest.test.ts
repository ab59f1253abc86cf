import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../../reference/triton/index.js';
import { TritonRestBackend } from '../../../src/backends/triton/rest.js';
import type { CallOptions } from '../../../src/backends/backend.js';
import { GatewayError, type ErrorCode } from '../../../src/core/errors.js';
import type { InferRequest } from '../../../src/core/inference.js';
import { SAMPLES } from '../../helpers/samples.js';

const soon = (ms = 5_000): CallOptions => ({ deadline: Date.now() + ms });

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, pattern?: RegExp): Promise<GatewayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  if (pattern) expect((err as GatewayError).message).toMatch(pattern);
  return err as GatewayError;
}

/** A node:http server answering every request with `handler`; `hold` never answers. */
async function startServer(handler: http.RequestListener): Promise<{ endpoint: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port nothing listens on: bind one, then let it go. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('TritonRestBackend against the reference Triton', () => {
  let triton: TritonReference;
  let backend: TritonRestBackend;

  beforeAll(async () => {
    triton = await startTritonReference();
    backend = new TritonRestBackend({ endpoint: triton.httpEndpoint, maxConnections: 4 });
  });
  afterAll(async () => {
    await backend.close();
    await triton.close();
  });

  it('names itself', () => {
    expect(backend).toMatchObject({ kind: 'triton', protocol: 'rest', endpoint: triton.httpEndpoint });
  });

  for (const s of SAMPLES) {
    it(`identity_${s.datatype.toLowerCase()}: returns the input bytes exactly`, async () => {
      const req: InferRequest = {
        model: `identity_${s.datatype.toLowerCase()}`,
        version: '',
        id: `id-${s.datatype}`,
        inputs: [{ name: 'INPUT0', datatype: s.datatype, shape: [...s.shape], data: s.raw }],
      };
      const resp = await backend.infer(req, soon());
      expect(resp).toMatchObject({ model: req.model, version: '1', id: req.id });
      const out = resp.outputs[0]!;
      expect(out).toMatchObject({ name: 'OUTPUT0', datatype: s.datatype, shape: [...s.shape] });
      expect(out.parameters).toBeUndefined(); // binary_data_size consumed
      expect(out.data.equals(s.raw)).toBe(true);
    });
  }

  it('sends large inputs as chunks and reads large replies', async () => {
    const rows = 20_000; // 20000 x 16 FP32 = 1.28 MB each way
    const data = Buffer.alloc(rows * 16 * 4);
    for (let i = 0; i < rows * 16; i++) data.writeFloatLE(i * 0.5, i * 4);
    const resp = await backend.infer(
      { model: 'identity_fp32', version: '', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 16], data }] },
      soon(),
    );
    expect(resp.outputs[0]!.data.equals(data)).toBe(true);
  });

  it('linear: versions 1 and 2 answer differently; requested outputs only', async () => {
    const x = Buffer.alloc(16);
    [1, 2, 3, 4].forEach((v, i) => x.writeFloatLE(v, i * 4));
    const call = (version: string) =>
      backend.infer(
        { model: 'linear', version, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: x }], outputs: [{ name: 'SCORES' }] },
        soon(),
      );
    const [v1, v2] = await Promise.all([call('1'), call('2')]);
    expect(v1.version).toBe('1');
    expect(v2.version).toBe('2');
    expect(v1.outputs.map((o) => o.name)).toEqual(['SCORES']);
    expect(v1.outputs[0]!.shape).toEqual([1, 3]);
    expect(v1.outputs[0]!.data.equals(v2.outputs[0]!.data)).toBe(false);
    // Bias 1 is [0.1, -0.2, 0.3] and bias 2 is [1, 0, -1]: the difference is the bias difference.
    const diff = [0, 4, 8].map((o) => v2.outputs[0]!.data.readFloatLE(o) - v1.outputs[0]!.data.readFloatLE(o));
    expect(diff.map((d) => Math.round(d * 10) / 10)).toEqual([0.9, 0.2, -1.3]);
  });

  it('simple: two inputs, two outputs', async () => {
    const a = Buffer.alloc(64);
    const b = Buffer.alloc(64);
    for (let i = 0; i < 16; i++) {
      a.writeInt32LE(i, i * 4);
      b.writeInt32LE(1, i * 4);
    }
    const resp = await backend.infer(
      {
        model: 'simple',
        version: '1',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: a },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: b },
        ],
      },
      soon(),
    );
    const [sum, diff] = resp.outputs;
    expect(sum!.data.readInt32LE(15 * 4)).toBe(16);
    expect(diff!.data.readInt32LE(0)).toBe(-1);
  });

  it('modelReady: true, false when not ready, NOT_FOUND when unknown', async () => {
    expect(await backend.modelReady('linear', '', soon())).toBe(true);
    expect(await backend.modelReady('linear', '2', soon())).toBe(true);
    expect(await backend.modelReady('unready', '', soon())).toBe(false);
    await rejectsWith(backend.modelReady('nope', '', soon()), 'NOT_FOUND', /unknown model: 'nope'/);
    await rejectsWith(backend.modelReady('linear', '9', soon()), 'NOT_FOUND', /linear/);
  });

  it('modelMetadata', async () => {
    expect(await backend.modelMetadata('linear', '', soon())).toEqual({
      name: 'linear',
      versions: ['1', '2'],
      platform: 'reference_linear',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [
        { name: 'SCORES', datatype: 'FP32', shape: [-1, 3] },
        { name: 'CLASS', datatype: 'INT64', shape: [-1] },
      ],
    });
    expect((await backend.modelMetadata('linear', '1', soon())).versions).toEqual(['1']);
    await rejectsWith(backend.modelMetadata('nope', '', soon()), 'NOT_FOUND', /nope/);
  });

  it('serverReady', async () => {
    expect(await backend.serverReady(soon())).toBe(true);
  });

  it("passes a backend 400 on with the backend's own message", async () => {
    const err = await rejectsWith(
      backend.infer(
        { model: 'linear', version: '', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 3], data: Buffer.alloc(12) }] },
        soon(),
      ),
      'INVALID_ARGUMENT',
    );
    expect(err.message).not.toMatch(/^HTTP 400$/);
    expect(err.message).toMatch(/INPUT0|shape/);
  });

  it('an unready model answers UNAVAILABLE, an unknown one NOT_FOUND', async () => {
    const input = { name: 'INPUT0', datatype: 'FP32' as const, shape: [1], data: Buffer.alloc(4) };
    await rejectsWith(backend.infer({ model: 'unready', version: '', inputs: [input] }, soon()), 'UNAVAILABLE');
    await rejectsWith(backend.infer({ model: 'nope', version: '', inputs: [input] }, soon()), 'NOT_FOUND', /nope/);
  });

  it('reuses connections across many calls', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, () => backend.modelReady('simple', '', soon())));
    expect(results.every(Boolean)).toBe(true);
  });

  it('a reply over maxMessageBytes is RESOURCE_EXHAUSTED', async () => {
    const small = new TritonRestBackend({ endpoint: triton.httpEndpoint, maxConnections: 1, maxMessageBytes: 1024 });
    try {
      const data = Buffer.alloc(4096);
      await rejectsWith(
        small.infer({ model: 'identity_uint8', version: '', inputs: [{ name: 'INPUT0', datatype: 'UINT8', shape: [1, 4096], data }] }, soon()),
        'RESOURCE_EXHAUSTED',
        /over the limit of 1024 bytes/,
      );
      expect(await small.serverReady(soon())).toBe(true); // still usable afterwards
    } finally {
      await small.close();
    }
  });
});

describe('TritonRestBackend failures', () => {
  it('an unreachable endpoint is UNAVAILABLE, quickly', async () => {
    const port = await closedPort();
    const backend = new TritonRestBackend({ endpoint: `127.0.0.1:${port}`, maxConnections: 1 });
    try {
      const started = Date.now();
      await rejectsWith(backend.serverReady(soon()), 'UNAVAILABLE', new RegExp(`backend triton 127.0.0.1:${port} unreachable: .*ECONNREFUSED`));
      await rejectsWith(backend.modelReady('m', '', soon()), 'UNAVAILABLE');
      await rejectsWith(backend.infer({ model: 'm', version: '', inputs: [] }, soon()), 'UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      await backend.close();
    }
  });

  it('a server that never answers hits the deadline: DEADLINE_EXCEEDED, on time', async () => {
    const server = await startServer(() => undefined);
    const backend = new TritonRestBackend({ endpoint: server.endpoint, maxConnections: 1 });
    try {
      const started = Date.now();
      await rejectsWith(backend.modelMetadata('m', '', soon(150)), 'DEADLINE_EXCEEDED', /did not answer within 1[45]\d ms/);
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(140);
      expect(took).toBeLessThan(1_000);
      // An already-passed deadline fails without sending anything.
      const sent = server.requests.length;
      await rejectsWith(backend.serverReady({ deadline: Date.now() - 1 }), 'DEADLINE_EXCEEDED');
      expect(server.requests.length).toBe(sent);
    } finally {
      await backend.close().catch(() => undefined);
      await server.close();
    }
  });

  it('a deadline that passes while the body streams is DEADLINE_EXCEEDED too', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"name":'); // and never the rest
    });
    const backend = new TritonRestBackend({ endpoint: server.endpoint, maxConnections: 1 });
    try {
      await rejectsWith(backend.modelMetadata('m', '', soon(150)), 'DEADLINE_EXCEEDED');
    } finally {
      await backend.close().catch(() => undefined);
      await server.close();
    }
  });

  it('a call still queued for a busy connection fails at its own deadline, and never goes out', async () => {
    // Holds the first request it gets; answers the others at once.
    let held = false;
    const server = await startServer((_req, res) => {
      if (!held) {
        held = true;
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    const backend = new TritonRestBackend({ endpoint: server.endpoint, maxConnections: 1 });
    try {
      const first = backend.serverReady(soon(1_500)).catch((e: unknown) => e);
      await expect.poll(() => server.requests.length).toBe(1);
      const started = Date.now();
      // The only connection is taken: this one waits in the pool's queue, and its deadline passes there.
      await rejectsWith(backend.serverReady(soon(100)), 'DEADLINE_EXCEEDED');
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(((await first) as GatewayError).code).toBe('DEADLINE_EXCEEDED');
      // The connection is free again: a new call is served, and the expired one was never sent.
      expect(await backend.serverReady(soon())).toBe(true);
      expect(server.requests).toHaveLength(2);
    } finally {
      await backend.close().catch(() => undefined);
      await server.close();
    }
  });

  it("the caller's signal cancels the call: CANCELLED", async () => {
    const server = await startServer(() => undefined);
    const backend = new TritonRestBackend({ endpoint: server.endpoint, maxConnections: 1 });
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      await rejectsWith(backend.serverReady({ deadline: Date.now() + 5_000, signal: controller.signal }), 'CANCELLED');
      await rejectsWith(backend.serverReady({ deadline: Date.now() + 5_000, signal: controller.signal }), 'CANCELLED');
    } finally {
      await backend.close().catch(() => undefined);
      await server.close();
    }
  });

  it('maps other statuses and odd bodies, and checks what it sends', async () => {
    let reply: [number, string, Record<string, string>?] = [503, ''];
    const seen: http.IncomingHttpHeaders[] = [];
    const server = await startServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.writeHead(reply[0], reply[2] ?? {});
        res.end(reply[1]);
      });
    });
    const backend = new TritonRestBackend({ endpoint: server.endpoint, maxConnections: 2 });
    try {
      expect(await backend.serverReady(soon())).toBe(false);
      reply = [500, 'internal <b>boom</b>'];
      await rejectsWith(backend.modelMetadata('m', '', soon()), 'INTERNAL', /^internal <b>boom<\/b>$/);
      reply = [503, ''];
      await rejectsWith(backend.modelReady('m', '', soon()), 'UNAVAILABLE', /^HTTP 503$/);
      reply = [200, '{"model_name":"m","outputs":"nope"}'];
      await rejectsWith(
        backend.infer({ model: 'm', version: '', inputs: [] }, { ...soon(), requestId: 'rid-1' }),
        'INTERNAL',
        /sent an invalid inference response: 'outputs' must be an array/,
      );
      reply = [200, '{"name":"m"', { 'inference-header-content-length': '999' }];
      await rejectsWith(backend.infer({ model: 'a/b c', version: '3', inputs: [] }, soon()), 'INTERNAL', /Inference-Header-Content-Length/);
      expect(server.requests).toContain('POST /v2/models/a%2Fb%20c/versions/3/infer');
      expect(server.requests).toContain('GET /v2/models/m');
      expect(server.requests).toContain('GET /v2/models/m/ready');
      expect(seen.some((h) => h['x-request-id'] === 'rid-1')).toBe(true);
    } finally {
      await backend.close();
      await server.close();
    }
  });

  it('a chunked reply that grows past maxMessageBytes is RESOURCE_EXHAUSTED', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }); // no content-length: chunked
      for (let i = 0; i < 8; i++) res.write('x'.repeat(512));
      res.end();
    });
    const backend = new TritonRestBackend({ endpoint: server.endpoint, maxConnections: 1, maxMessageBytes: 1024 });
    try {
      await rejectsWith(backend.modelMetadata('m', '', soon()), 'RESOURCE_EXHAUSTED', /more than 1024 bytes/);
    } finally {
      await backend.close().catch(() => undefined);
      await server.close();
    }
  });

  it('after close() every call is UNAVAILABLE', async () => {
    const triton = await startTritonReference();
    const backend = new TritonRestBackend({ endpoint: triton.httpEndpoint, maxConnections: 1 });
    try {
      expect(await backend.serverReady(soon())).toBe(true);
      await backend.close();
      await backend.close(); // idempotent
      await rejectsWith(backend.serverReady(soon()), 'UNAVAILABLE', /closed/);
      await rejectsWith(backend.infer({ model: 'simple', version: '', inputs: [] }, soon()), 'UNAVAILABLE', /closed/);
    } finally {
      await triton.close();
    }
  });
});
