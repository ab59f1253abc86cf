// W3C trace context: traceparent parsing, and end to end a client's trace reaching the backend (REST and gRPC
// backends, from REST, gRPC unary and ModelStreamInfer clients) as a new span of the same trace; request ids
// returned on every surface.
import { Writable } from 'node:stream';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../../src/gateway.js';
import { createLogger } from '../../src/observability/logger.js';
import { childTraceparent, parseTraceparent, startTrace, traceFrom } from '../../src/observability/trace-context.js';
import { grpc, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';
import { call } from '../helpers/http.js';
import { LINEAR_REQUEST } from '../helpers/live.js';
import { stackConfig, startStack, type Stack } from '../helpers/stack.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const VALID = `00-${TRACE_ID}-${PARENT_ID}-01`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

describe('parseTraceparent', () => {
  it('reads a valid version 00 header', () => {
    expect(parseTraceparent(VALID)).toEqual({ traceId: TRACE_ID, flags: '01' });
    expect(parseTraceparent(`00-${TRACE_ID}-${PARENT_ID}-00`)).toEqual({ traceId: TRACE_ID, flags: '00' });
  });

  it('refuses what the specification calls invalid', () => {
    const invalid = [
      undefined,
      '',
      VALID.slice(0, 54), // short
      `${VALID}-extra`, // version 00 has exactly four fields
      `${VALID} `,
      VALID.toUpperCase(), // lower-case hex only
      `00-${'0'.repeat(32)}-${PARENT_ID}-01`, // all-zero trace id
      `00-${TRACE_ID}-${'0'.repeat(16)}-01`, // all-zero parent id
      `ff-${TRACE_ID}-${PARENT_ID}-01`, // version ff is forbidden
      `0g-${TRACE_ID}-${PARENT_ID}-01`,
      `00_${TRACE_ID}-${PARENT_ID}-01`,
      `00-${TRACE_ID}_${PARENT_ID}-01`,
      `00-${TRACE_ID}-${PARENT_ID}_01`,
      `00-${TRACE_ID.slice(0, 31)}x-${PARENT_ID}-01`,
      `00-${TRACE_ID}-${PARENT_ID.slice(0, 15)}x-01`,
      `00-${TRACE_ID}-${PARENT_ID}-0x`,
      `00-${TRACE_ID}-${PARENT_ID}-1`,
    ];
    for (const value of invalid) expect(parseTraceparent(value), String(value)).toBeUndefined();
  });

  it('reads a later version by version 00 rules, ignoring what follows a dash', () => {
    expect(parseTraceparent(`01-${TRACE_ID}-${PARENT_ID}-01`)).toEqual({ traceId: TRACE_ID, flags: '01' });
    expect(parseTraceparent(`cc-${TRACE_ID}-${PARENT_ID}-01-what-comes-next`)).toEqual({ traceId: TRACE_ID, flags: '01' });
    expect(parseTraceparent(`cc-${TRACE_ID}-${PARENT_ID}-01x`)).toBeUndefined();
  });
});

describe('traces the gateway starts and passes on', () => {
  it('continues a valid trace and starts a new one otherwise', () => {
    expect(traceFrom(VALID).traceId).toBe(TRACE_ID);
    for (const given of [undefined, 'garbage', `00-${'0'.repeat(32)}-${PARENT_ID}-01`]) {
      const trace = traceFrom(given);
      expect(trace.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(trace.traceId).not.toBe('0'.repeat(32));
      expect(trace.flags).toBe('01');
    }
  });

  it('gives every new trace its own id and every backend call its own span', () => {
    const ids = new Set(Array.from({ length: 2_000 }, () => startTrace().traceId));
    expect(ids.size).toBe(2_000);
    const trace = traceFrom(VALID);
    const spans = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const header = childTraceparent(trace);
      const m = TRACEPARENT.exec(header);
      expect(m, header).not.toBeNull();
      expect(m![1]).toBe(TRACE_ID);
      expect(m![3]).toBe('01');
      expect(parseTraceparent(header)).toEqual(trace);
      spans.add(m![2]!);
    }
    expect(spans.size).toBe(500);
    expect(spans.has(PARENT_ID)).toBe(false);
  });
});

let stack: Stack;
let client: V2Client;

beforeAll(async () => {
  stack = await startStack();
  client = v2Client(stack.grpcAddress);
});

afterAll(async () => {
  client?.close();
  await stack?.close();
});

/** The traceparent the reference Triton got with its latest inference call, split up. */
function backendTrace(): { traceId: string; spanId: string; flags: string; requestId: string | undefined } {
  const headers = stack.triton.stats.lastHeaders ?? {};
  const m = TRACEPARENT.exec(headers.traceparent ?? '');
  expect(m, `backend traceparent: ${headers.traceparent}`).not.toBeNull();
  return { traceId: m![1]!, spanId: m![2]!, flags: m![3]!, requestId: headers['x-request-id'] };
}

function restInfer(model: string, headers: Record<string, string>) {
  return call(stack.http, 'POST', `/v2/models/${model}/infer`, LINEAR_REQUEST, { 'content-type': 'application/json', ...headers });
}

const GRPC_LINEAR: Message = {
  model_name: 'linear',
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
};

/** A unary ModelInfer with the given metadata; resolves with the trailers. */
function grpcInfer(request: Message, metadata: Record<string, string>): Promise<grpc.Metadata> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(metadata)) md.set(k, v);
  return new Promise((resolve, reject) => {
    const rpc = client.raw.ModelInfer as (
      req: Message,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null) => void,
    ) => grpc.ClientUnaryCall;
    const c = rpc.call(client.raw, request, md, { deadline: Date.now() + 10_000 }, (err) => (err ? reject(err) : undefined));
    c.on('status', (status: grpc.StatusObject) => {
      if (status.code === grpc.status.OK) resolve(status.metadata);
    });
  });
}

describe('traceparent end to end', () => {
  it.each([
    ['a gRPC backend', 'linear'],
    ['a REST backend', 'rest.linear'],
  ])('a REST request with a traceparent reaches %s in the same trace, as a new span', async (_what, model) => {
    const res = await restInfer(model, { traceparent: VALID, 'x-request-id': 'trace-rest-1' });
    expect(res.status).toBe(200);
    const sent = backendTrace();
    expect(sent.traceId).toBe(TRACE_ID);
    expect(sent.spanId).not.toBe(PARENT_ID);
    expect(sent.flags).toBe('01');
    expect(sent.requestId).toBe('trace-rest-1');
    expect(res.headers['x-request-id']).toBe('trace-rest-1');
  });

  it('keeps the client flags, and gives each request a span of its own', async () => {
    await restInfer('linear', { traceparent: `00-${TRACE_ID}-${PARENT_ID}-00` });
    const first = backendTrace();
    await restInfer('linear', { traceparent: `00-${TRACE_ID}-${PARENT_ID}-00` });
    const second = backendTrace();
    expect([first.traceId, second.traceId]).toEqual([TRACE_ID, TRACE_ID]);
    expect([first.flags, second.flags]).toEqual(['00', '00']);
    expect(first.spanId).not.toBe(second.spanId);
  });

  it.each([
    ['no traceparent', {}],
    ['an invalid one', { traceparent: `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01` }],
  ])('a request with %s starts a new trace, sent on as a valid traceparent', async (_what, headers: Record<string, string>) => {
    expect((await restInfer('rest.linear', headers)).status).toBe(200);
    const first = backendTrace();
    expect(first.traceId).not.toBe(TRACE_ID);
    expect(parseTraceparent(stack.triton.stats.lastHeaders?.traceparent)).toBeDefined();
    expect((await restInfer('rest.linear', headers)).status).toBe(200);
    expect(backendTrace().traceId).not.toBe(first.traceId);
  });

  it('a gRPC ModelInfer with traceparent metadata reaches the backend in the same trace; x-request-id comes back in the trailers', async () => {
    const trailers = await grpcInfer(GRPC_LINEAR, { traceparent: VALID, 'x-request-id': 'trace-grpc-1' });
    const sent = backendTrace();
    expect(sent.traceId).toBe(TRACE_ID);
    expect(sent.spanId).not.toBe(PARENT_ID);
    expect(sent.requestId).toBe('trace-grpc-1');
    expect(trailers.get('x-request-id')).toEqual(['trace-grpc-1']);

    const made = await grpcInfer({ ...GRPC_LINEAR, model_name: 'rest.linear' }, {});
    expect(backendTrace().traceId).not.toBe(TRACE_ID);
    expect(String(made.get('x-request-id')[0])).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('ModelStreamInfer: every message reaches the backend in the stream trace; x-request-id comes back in the initial metadata', async () => {
    const md = new grpc.Metadata();
    md.set('traceparent', VALID);
    md.set('x-request-id', 'trace-stream-1');
    const open = client.raw.ModelStreamInfer as (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientDuplexStream<Message, Message>;
    const stream = open.call(client.raw, md, { deadline: Date.now() + 10_000 });
    const initial = new Promise<grpc.Metadata>((resolve) => stream.once('metadata', resolve));
    // One message at a time (the next one written when the answer came), so the backend's latest call is its.
    const sent: (string | undefined)[] = [];
    const replies: Message[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: Message) => {
        replies.push(m);
        sent.push(stack.triton.stats.lastHeaders?.traceparent);
        if (replies.length < 2) stream.write({ ...GRPC_LINEAR, model_name: 'rest.linear' });
        else stream.end();
      });
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.write(GRPC_LINEAR);
    await done;
    expect((await initial).get('x-request-id')).toEqual(['trace-stream-1']);
    expect(replies.map((r) => r.error_message)).toEqual(['', '']);
    const parsed = sent.map((h) => TRACEPARENT.exec(h ?? ''));
    expect(parsed.map((m) => m?.[1])).toEqual([TRACE_ID, TRACE_ID]);
    const spans = parsed.map((m) => m?.[2]);
    expect(new Set(spans).size).toBe(2);
    expect(spans).not.toContain(PARENT_ID);
  });

  it('ModelStreamInfer without an x-request-id gets one made up in its initial metadata', async () => {
    const open = client.raw.ModelStreamInfer as (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientDuplexStream<Message, Message>;
    const stream = open.call(client.raw, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
    const initial = new Promise<grpc.Metadata>((resolve) => stream.once('metadata', resolve));
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('data', () => undefined);
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.end();
    expect(String((await initial).get('x-request-id')[0])).toMatch(/^[0-9a-f-]{36}$/);
    await ended;
  });
});

describe('request ids', () => {
  it('are returned on REST errors and by the front doors', async () => {
    const unknown = await restInfer('no-such-model', { 'x-request-id': 'rid-404' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers['x-request-id']).toBe('rid-404');
    const tf = await call(stack.http, 'POST', '/v1/models/linear:predict', '{"instances":[[1,2,3,4]]}', { 'x-request-id': 'rid-tf' });
    expect(tf.status).toBe(200);
    expect(tf.headers['x-request-id']).toBe('rid-tf');
    expect(backendTrace().requestId).toBe('rid-tf');
  });

  it('are returned in gRPC error trailers', async () => {
    const md = new grpc.Metadata();
    md.set('x-request-id', 'rid-grpc-404');
    const err = await client.unary('ModelInfer', { ...GRPC_LINEAR, model_name: 'no-such-model' }, md).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
    expect(err?.metadata.get('x-request-id')).toEqual(['rid-grpc-404']);
  });
});

describe('request logs', () => {
  it('name the trace of a failed request (REST and gRPC), the client\'s when it sent one', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const gw = await startGateway(stackConfig(stack.triton), createLogger('warn', sink));
    const pool = new Pool(`http://127.0.0.1:${gw.httpPort}`, { connections: 1 });
    const grpcClient = v2Client(`127.0.0.1:${gw.grpcPort}`);
    try {
      const rest = await call(pool, 'POST', '/v2/models/no-such-model/infer', LINEAR_REQUEST, { traceparent: VALID, 'x-request-id': 'log-rest' });
      expect(rest.status).toBe(404);
      const md = new grpc.Metadata();
      md.set('traceparent', VALID);
      md.set('x-request-id', 'log-grpc');
      await grpcClient.unary('ModelInfer', { ...GRPC_LINEAR, model_name: 'no-such-model' }, md).catch(() => undefined);
      await grpcClient.unary('ModelInfer', { ...GRPC_LINEAR, model_name: 'no-such-model' }, new grpc.Metadata()).catch(() => undefined);
      const failures = () => lines.filter((l) => l.code === 'NOT_FOUND');
      await expect.poll(() => failures().length, { timeout: 5_000, interval: 20 }).toBe(3);
      const byId = (id: string) => failures().find((l) => l.requestId === id);
      expect(byId('log-rest')).toMatchObject({ trace_id: TRACE_ID, code: 'NOT_FOUND' });
      expect(byId('log-grpc')).toMatchObject({ trace_id: TRACE_ID, code: 'NOT_FOUND', rpc: 'ModelInfer' });
      const fresh = failures().find((l) => l.requestId !== 'log-rest' && l.requestId !== 'log-grpc');
      expect(fresh?.trace_id).toMatch(/^[0-9a-f]{32}$/);
      expect(fresh?.trace_id).not.toBe(TRACE_ID);
    } finally {
      grpcClient.close();
      await pool.close();
      await gw.close(1_000);
    }
  });
});
