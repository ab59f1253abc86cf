import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTritonReference } from '../../reference/triton/index.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { grpc, grpcError, v2Client, type Message, type V2Client } from '../helpers/grpc-client.js';

/** The code of an undici failure, from the error or its cause (connect errors nest the system error). */
function codeOf(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string } };
  return e.cause?.code ?? e.code ?? String(err);
}

async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return codeOf(err);
  }
  throw new Error('expected the request to fail');
}

describe('fault proxy', () => {
  let server: http.Server;
  let target: string;
  let proxy: FaultProxy;
  let pool: Pool;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(`echo:${Buffer.concat(chunks).toString()}`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    target = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(async () => {
    proxy = await startFaultProxy(target);
    pool = new Pool(`http://${proxy.endpoint}`, { connections: 2 });
  });
  afterEach(async () => {
    await pool.destroy();
    await proxy.close();
  });

  const post = (body = 'hi', timeoutMs = 2000) =>
    pool.request({ method: 'POST', path: '/', body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }).then(async (res) => ({
      status: res.statusCode,
      text: await res.body.text(),
    }));

  it('passes requests through and counts connections and bytes', async () => {
    expect(proxy.endpoint).toBe(`127.0.0.1:${proxy.port}`);
    expect(await post('one')).toEqual({ status: 200, text: 'echo:one' });
    expect(await post('two')).toEqual({ status: 200, text: 'echo:two' });
    expect(proxy.accepted).toBeGreaterThanOrEqual(1);
    expect(proxy.forwardedBytes).toBeGreaterThan(2 * 'POST / HTTP/1.1\r\n'.length);
  });

  it('resets existing and new connections', async () => {
    await post();
    await proxy.setMode({ kind: 'reset' });
    const before = proxy.accepted;
    expect(['ECONNRESET', 'UND_ERR_SOCKET']).toContain(await failure(post()));
    expect(proxy.accepted).toBeGreaterThan(before);
  });

  it('hangs: a request times out, and heals when the mode goes back to pass', async () => {
    await proxy.setMode({ kind: 'hang' });
    expect(await failure(post('x', 300))).toBe('UND_ERR_HEADERS_TIMEOUT');
    const forwarded = proxy.forwardedBytes;
    const late = post('late', 5000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(proxy.forwardedBytes).toBe(forwarded);
    await proxy.setMode({ kind: 'pass' });
    expect(await late).toEqual({ status: 200, text: 'echo:late' });
  });

  it('refuses connections, then listens again on the same port', async () => {
    await post();
    const port = proxy.port;
    await proxy.setMode({ kind: 'refuse' });
    expect(await failure(post())).toBe('ECONNREFUSED');
    await proxy.setMode({ kind: 'pass' });
    expect(proxy.port).toBe(port);
    expect(await post('back')).toEqual({ status: 200, text: 'echo:back' });
  });

  it('delays client->server traffic', async () => {
    await post(); // connection set up outside the measurement
    await proxy.setMode({ kind: 'delay', ms: 250 });
    const start = performance.now();
    expect(await post('slow')).toEqual({ status: 200, text: 'echo:slow' });
    expect(performance.now() - start).toBeGreaterThanOrEqual(240);
    await proxy.setMode({ kind: 'pass' });
    const fast = performance.now();
    await post();
    expect(performance.now() - fast).toBeLessThan(200);
  });

  it('close() destroys open connections, even hung ones', async () => {
    await proxy.setMode({ kind: 'hang' });
    const pending = failure(post('x', 5000));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const start = performance.now();
    await proxy.close();
    expect(performance.now() - start).toBeLessThan(1000);
    expect(['ECONNRESET', 'UND_ERR_SOCKET']).toContain(await pending);
  });
});

describe('fault proxy in front of gRPC', () => {
  /** ServerReady with a deadline of our own. */
  const serverReady = (client: V2Client, timeoutMs: number): Promise<Message> =>
    new Promise((resolve, reject) => {
      client.raw['ServerReady']!.call(client.raw, {}, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Message) =>
        err ? reject(err) : resolve(res));
    });

  it('carries HTTP/2 through, stalls it, resets it and carries it again', async () => {
    const triton = await startTritonReference({ host: '127.0.0.1' });
    const proxy = await startFaultProxy(triton.grpcEndpoint);
    const clients: V2Client[] = [];
    const client = (): V2Client => {
      const c = v2Client(proxy.endpoint);
      clients.push(c);
      return c;
    };
    try {
      const first = client();
      expect(await serverReady(first, 5000)).toEqual({ ready: true });
      await proxy.setMode({ kind: 'hang' });
      expect((await grpcError(serverReady(first, 300))).code).toBe(grpc.status.DEADLINE_EXCEEDED);
      await proxy.setMode({ kind: 'reset' });
      expect((await grpcError(serverReady(client(), 2000))).code).toBe(grpc.status.UNAVAILABLE);
      await proxy.setMode({ kind: 'pass' });
      // grpc-js fails calls fast during the reconnect backoff the resets caused (about a second), so retry.
      const fresh = client();
      let answer: Message | undefined;
      for (let attempt = 0; attempt < 25 && answer === undefined; attempt++) {
        answer = await serverReady(fresh, 1000).catch(async () => {
          await new Promise((resolve) => setTimeout(resolve, 200));
          return undefined;
        });
      }
      expect(answer).toEqual({ ready: true });
    } finally {
      for (const c of clients) c.close();
      await proxy.close();
      await triton.close();
    }
  });
});
