import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryTokenBuckets } from '../../src/resilience/rate-limit.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { credentials, grpc, grpcClients, sha256, unary, V2_LINEAR_REQUEST, type GrpcClients, type Message } from '../helpers/auth.js';
import { call, type HttpReply } from '../helpers/http.js';
import { LINEAR_REQUEST, liveText, startLiveGateway, type LiveGateway } from '../helpers/live.js';

describe('MemoryTokenBuckets', () => {
  const limit = { rps: 2, burst: 3 };

  it('lets a burst through, then one request per 1/rps, and says how long to wait', () => {
    let now = 1_000_000;
    const buckets = new MemoryTokenBuckets(100, () => now);
    const claim = [{ id: 'key:a', limit }];
    for (let i = 0; i < 3; i++) expect(buckets.take(claim).allowed).toBe(true);
    expect(buckets.take(claim)).toEqual({ allowed: false, bucket: 'key:a', retryAfterMs: 500 });
    now += 250;
    expect(buckets.take(claim)).toEqual({ allowed: false, bucket: 'key:a', retryAfterMs: 250 });
    now += 250;
    expect(buckets.take(claim).allowed).toBe(true);
    expect(buckets.take(claim).allowed).toBe(false);
    // Refills stop at the burst.
    now += 60_000;
    for (let i = 0; i < 3; i++) expect(buckets.take(claim).allowed).toBe(true);
    expect(buckets.take(claim).allowed).toBe(false);
  });

  it('takes from every bucket of a request or from none', () => {
    const now = 5_000;
    const buckets = new MemoryTokenBuckets(100, () => now);
    const key = { id: 'key:a', limit: { rps: 1, burst: 5 } };
    const model = { id: 'model:m', limit: { rps: 1, burst: 2 } };
    expect(buckets.take([key, model]).allowed).toBe(true);
    expect(buckets.take([key, model]).allowed).toBe(true);
    // The model's bucket is empty: refused, and the key's bucket keeps its tokens.
    expect(buckets.take([key, model])).toMatchObject({ allowed: false, bucket: 'model:m' });
    for (let i = 0; i < 3; i++) expect(buckets.take([key]).allowed).toBe(true);
    expect(buckets.take([key]).allowed).toBe(false);
  });

  it('keeps at most maxBuckets, dropping the least recently used', () => {
    const buckets = new MemoryTokenBuckets(3, () => 0);
    const claim = (id: string) => [{ id, limit: { rps: 1, burst: 1 } }];
    for (const id of ['a', 'b', 'c']) expect(buckets.take(claim(id)).allowed).toBe(true);
    expect(buckets.take(claim('a')).allowed).toBe(false); // a is now the most recent
    expect(buckets.take(claim('d')).allowed).toBe(true); // b goes
    expect(buckets.size).toBe(3);
    expect(buckets.take(claim('a')).allowed).toBe(false);
    expect(buckets.take(claim('b')).allowed).toBe(true); // b came back full
  });

  it('a lowered burst cuts the tokens saved; a raised rps refills faster', () => {
    let now = 0;
    const buckets = new MemoryTokenBuckets(10, () => now);
    for (let i = 0; i < 2; i++) expect(buckets.take([{ id: 'k', limit: { rps: 1, burst: 10 } }]).allowed).toBe(true);
    expect(buckets.take([{ id: 'k', limit: { rps: 1, burst: 1 } }]).allowed).toBe(true);
    expect(buckets.take([{ id: 'k', limit: { rps: 1, burst: 1 } }]).allowed).toBe(false);
    now += 10;
    expect(buckets.take([{ id: 'k', limit: { rps: 1000, burst: 1 } }]).allowed).toBe(true);
  });
});

/** Limits low enough that no test can refill a bucket: rps 0.01 is one token per 100 s. */
const AUTH = `auth:
  api_keys:
    - { name: limited, key_sha256: "${sha256('limited-key')}", models: ["*"] }
    - { name: free, key_sha256: "${sha256('free-key')}", models: ["*"] }
    - { name: other, key_sha256: "${sha256('other-key')}", models: ["*"] }
    - { name: streamer, key_sha256: "${sha256('streamer-key')}", models: ["*"] }
    - { name: grpc-only, key_sha256: "${sha256('grpc-key')}", models: ["*"] }`;
const limits = (limitedRps: number): string => `rate_limits:
  per_key:
    limited: { rps: ${limitedRps}, burst: 3 }
    streamer: { rps: 0.01, burst: 2 }
    grpc-only: { rps: 0.01, burst: 1 }
  per_model:
    rank-a: { rps: 0.01, burst: 2 }`;
const MODELS = '  rank-a: { backend: triton-grpc, model: linear }';

describe('rate limits (in memory)', () => {
  let triton: TritonReference;
  let gw: LiveGateway;
  let clients: GrpcClients;
  const text = (limitedRps: number): string => liveText(triton, { auth: AUTH, models: MODELS, extra: limits(limitedRps) });

  beforeAll(async () => {
    triton = await startTritonReference({ host: '127.0.0.1' });
    gw = await startLiveGateway(text(0.01), { env: {} });
    clients = grpcClients(`127.0.0.1:${gw.gateway.grpcPort}`);
  });
  afterAll(async () => {
    clients?.close();
    await gw?.close();
    await triton?.close();
  });

  const infer = (model: string, key: string): Promise<HttpReply> =>
    call(gw.pool, 'POST', `/v2/models/${model}/infer`, LINEAR_REQUEST, { 'content-type': 'application/json', authorization: `Bearer ${key}` });

  it("over a key's limit: 429 with Retry-After (whole seconds) and the limit named; other keys and non-inference calls go on", async () => {
    for (let i = 0; i < 3; i++) expect((await infer('linear', 'limited-key')).status).toBe(200);
    const over = await infer('linear', 'limited-key');
    expect(over.status, over.text()).toBe(429);
    expect(over.json<{ error: string }>().error).toMatch(/^rate limit exceeded for API key 'limited' \(0\.01 requests\/s, burst 3\); retry in \d+ ms$/);
    const retryAfter = Number(over.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    // About 100 s for one token at 0.01/s.
    expect(retryAfter).toBeGreaterThan(1);
    expect(retryAfter).toBeLessThanOrEqual(100);
    // The TF Serving front door takes from the same bucket.
    expect((await call(gw.pool, 'POST', '/v1/models/linear:predict', '{"instances":[[1,2,3,4]]}', { authorization: 'Bearer limited-key' })).status).toBe(429);
    expect((await call(gw.pool, 'GET', '/v2/models/linear', undefined, { authorization: 'Bearer limited-key' })).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await infer('linear', 'free-key')).status).toBe(200);
  });

  it("over a model's limit: 429 for every key calling it", async () => {
    expect((await infer('rank-a', 'free-key')).status).toBe(200);
    expect((await infer('rank-a', 'other-key')).status).toBe(200);
    const over = await infer('rank-a', 'other-key');
    expect(over.status).toBe(429);
    expect(over.json<{ error: string }>().error).toMatch(/rate limit exceeded for model 'rank-a'/);
    expect((await infer('rank-a', 'free-key')).status).toBe(429);
    expect((await infer('linear', 'other-key')).status).toBe(200);
  });

  it('gRPC: RESOURCE_EXHAUSTED with grpc-retry-pushback-ms; stream messages count one by one (in band)', async () => {
    expect((await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials('grpc-key'))).error).toBeUndefined();
    const { error } = await unary(clients.v2, 'ModelInfer', V2_LINEAR_REQUEST('linear'), credentials('grpc-key'));
    expect(error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(error?.details).toMatch(/rate limit exceeded for API key 'grpc-only'/);
    const pushback = Number(error?.metadata.get('grpc-retry-pushback-ms')[0]);
    expect(pushback).toBeGreaterThan(1_000);

    type Stream = grpc.ClientDuplexStream<Message, Message>;
    const stream = (clients.v2.ModelStreamInfer as (md: grpc.Metadata) => Stream).call(clients.v2, credentials('streamer-key'));
    const replies: Message[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: Message) => replies.push(m));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    for (let i = 0; i < 3; i++) stream.write(V2_LINEAR_REQUEST('linear'));
    stream.end();
    await done;
    expect(replies.map((r) => String(r.error_message).replace(/retry in \d+ ms/, 'retry in N ms'))).toEqual([
      '',
      '',
      "rate limit exceeded for API key 'streamer' (0.01 requests/s, burst 2); retry in N ms",
    ]);
  });

  it('limits follow config changes', async () => {
    expect((await infer('linear', 'limited-key')).status).toBe(429);
    const result = await gw.gateway.live.propose(text(100_000), 'admin');
    expect(result).toMatchObject({ accepted: true, diff: ['~ rate_limits.per_key.limited.rps: 0.01 -> 100000'] });
    // The bucket refills at the new rate: a token per 10 µs.
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await infer('linear', 'limited-key')).status).toBe(200);
  });
});
