// The reference Triton's injected faults, as a client sees them on the wire (REST and gRPC).
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { grpc, grpcError, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';

const REST_BODY = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
const GRPC_REQUEST = { model_name: 'linear', inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] };

async function restInfer(triton: TritonReference, timeoutMs = 5000): Promise<{ status: number; body: unknown }> {
  const res = await request(`http://${triton.httpEndpoint}/v2/models/linear/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: REST_BODY,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  return { status: res.statusCode, body: await res.body.json() };
}

/** ModelInfer with a deadline of our own (the helper's unary() fixes 10 s). */
function grpcInfer(client: V2Client, timeoutMs = 5000): Promise<Message> {
  return new Promise((resolve, reject) => {
    const fn = client.raw['ModelInfer']!;
    fn.call(client.raw, GRPC_REQUEST, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Message) =>
      err ? reject(err) : resolve(res));
  });
}

const elapsed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const start = performance.now();
  const value = await fn();
  return [value, performance.now() - start];
};

describe('reference Triton faults', () => {
  let triton: TritonReference;
  let client: V2Client;

  beforeAll(async () => {
    triton = await startTritonReference({ host: '127.0.0.1' });
    client = v2Client(triton.grpcEndpoint);
  });
  afterAll(async () => {
    client.close();
    await triton.close();
  });
  afterEach(() => triton.setFault(undefined));

  it('answers normally without a fault', async () => {
    expect((await restInfer(triton)).status).toBe(200);
    expect(((await grpcInfer(client)) as { model_name: string }).model_name).toBe('linear');
  });

  it('error UNAVAILABLE: REST 503 {"error"}, gRPC UNAVAILABLE with the message', async () => {
    triton.setFault({ kind: 'error', status: 'UNAVAILABLE', message: 'overloaded' });
    const before = triton.stats.inferCalls;
    expect(await restInfer(triton)).toEqual({ status: 503, body: { error: 'overloaded' } });
    const err = await grpcError(grpcInfer(client));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.details).toBe('overloaded');
    expect(triton.stats.inferCalls).toBe(before + 2);
  });

  it('error INTERNAL: REST 500, gRPC INTERNAL, with a default message', async () => {
    triton.setFault({ kind: 'error', status: 'INTERNAL' });
    const rest = await restInfer(triton);
    expect(rest.status).toBe(500);
    expect(rest.body).toEqual({ error: expect.stringContaining('INTERNAL') });
    const err = await grpcError(grpcInfer(client));
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(err.details).toContain('INTERNAL');
  });

  it('leaves health, readiness and metadata alone', async () => {
    triton.setFault({ kind: 'hang' });
    const ready = await request(`http://${triton.httpEndpoint}/v2/health/ready`, { headersTimeout: 2000 });
    expect(ready.statusCode).toBe(200);
    await ready.body.dump();
    const meta = await request(`http://${triton.httpEndpoint}/v2/models/linear`, { headersTimeout: 2000 });
    expect(meta.statusCode).toBe(200);
    await meta.body.dump();
    expect(await client.unary('ServerReady', {})).toEqual({ ready: true });
    expect((await client.unary('ModelMetadata', { name: 'linear' })).name).toBe('linear');
  });

  it('hang: REST times out on the client, gRPC hits its deadline', async () => {
    triton.setFault({ kind: 'hang' });
    const before = triton.stats.inferCalls;
    await expect(restInfer(triton, 300)).rejects.toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    const err = await grpcError(grpcInfer(client, 300));
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(triton.stats.inferCalls).toBe(before + 2);
    // Clearing the fault heals new calls.
    triton.setFault(undefined);
    expect((await restInfer(triton)).status).toBe(200);
  });

  it('latency: adds to every inference, on top of the latencyMs option', async () => {
    triton.setFault({ kind: 'latency', ms: 200 });
    const [rest, restMs] = await elapsed(() => restInfer(triton));
    expect(rest.status).toBe(200);
    expect(restMs).toBeGreaterThanOrEqual(190);
    const [, grpcMs] = await elapsed(() => grpcInfer(client));
    expect(grpcMs).toBeGreaterThanOrEqual(190);

    const slow = await startTritonReference({ host: '127.0.0.1', latencyMs: 150 });
    try {
      const [, baseMs] = await elapsed(() => restInfer(slow));
      expect(baseMs).toBeGreaterThanOrEqual(140);
      slow.setFault({ kind: 'latency', ms: 150 });
      const [, bothMs] = await elapsed(() => restInfer(slow));
      expect(bothMs).toBeGreaterThanOrEqual(290);
      expect(slow.stats.inferCalls).toBe(2);
    } finally {
      await slow.close();
    }
  });

  it('streams report an error fault per message and go on', async () => {
    triton.setFault({ kind: 'error', status: 'UNAVAILABLE', message: 'stream fault' });
    const call = (client.raw['ModelStreamInfer'] as (m: grpc.Metadata, o: grpc.CallOptions) => grpc.ClientDuplexStream<Message, Message>)
      .call(client.raw, new grpc.Metadata(), { deadline: Date.now() + 5000 });
    const replies: Message[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: Message) => replies.push(m));
      call.on('end', resolve);
      call.on('error', reject);
    });
    call.write(GRPC_REQUEST);
    call.write(GRPC_REQUEST);
    call.end();
    await done;
    expect(replies.map((r) => r.error_message)).toEqual(['stream fault', 'stream fault']);
  });

  it('close() does not wait for hung calls, and drops them', async () => {
    const hung = await startTritonReference({ host: '127.0.0.1' });
    const hungClient = v2Client(hung.grpcEndpoint);
    try {
      hung.setFault({ kind: 'hang' });
      const rest = restInfer(hung, 10_000).then(() => 'answered', (err: { code?: string }) => err.code ?? 'error');
      const rpc = grpcInfer(hungClient, 10_000).then(() => 'answered', (err: grpc.ServiceError) => err.code);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(hung.stats.inferCalls).toBe(2);
      const [, closeMs] = await elapsed(() => hung.close());
      expect(closeMs).toBeLessThan(1000);
      expect(['ECONNRESET', 'UND_ERR_SOCKET']).toContain(await rest);
      expect([grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.INTERNAL]).toContain(await rpc);
    } finally {
      hungClient.close();
      await hung.close();
    }
  });
});
