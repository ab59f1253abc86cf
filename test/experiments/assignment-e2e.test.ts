import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { grpc, v2Client, type Message } from '../helpers/grpc-client.js';
import { call } from '../helpers/http.js';
import { admin, LINEAR_REQUEST, startLiveGateway, type LiveGateway } from '../helpers/live.js';

/**
 * A/B experiments end to end: a gateway whose public model `linear` runs an
 * experiment over two reference Tritons, arm a on one and arm b on the other
 * (so the server that counted the request shows the arm). Every answer names
 * its arm (x-infergate-variant: REST header, gRPC trailer); a key gets the same
 * arm from separately started gateways; the admin API changes the split live.
 */

let t1: TritonReference;
let t2: TritonReference;
let gw: LiveGateway;

function configText(): string {
  return `# experiments e2e
server:
  http: { host: 127.0.0.1, port: 0 }
  grpc: { host: 127.0.0.1, port: 0 }
  request_timeout_ms: 5000
  log_level: silent
auth: { enabled: false }
backends:
  t1: { kind: triton, protocol: rest, endpoints: ["${t1.httpEndpoint}"], health_check: { interval_ms: 0 } }
  t2: { kind: triton, protocol: grpc, endpoints: ["${t2.grpcEndpoint}"], health_check: { interval_ms: 0 } }
models:
  linear: { backend: t1 }
experiments:
  linear-ab:
    model: linear
    key: { header: x-user-id }
    salt: linear-2026-11   # fixes the split
    control: a
    arms:
      a: { weight: 50, backend: t1, id: arm-a }
      b: { weight: 50, backend: t2, id: arm-b }
`;
}

const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);

async function restArm(g: LiveGateway, headers: Record<string, string>): Promise<string> {
  const res = await call(g.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { 'content-type': 'application/json', ...headers });
  expect(res.status, res.text()).toBe(200);
  const variant = res.headers['x-infergate-variant'];
  expect(typeof variant).toBe('string');
  // The arm's leaf served it.
  expect(res.headers['x-infergate-target']).toBe(`arm-${String(variant)}`);
  return String(variant);
}

async function armsOf(g: LiveGateway, ks: readonly string[]): Promise<string[]> {
  return Promise.all(ks.map((k) => restArm(g, { 'x-user-id': k })));
}

beforeAll(async () => {
  [t1, t2] = await Promise.all([startTritonReference({ host: '127.0.0.1' }), startTritonReference({ host: '127.0.0.1' })]);
  gw = await startLiveGateway(configText());
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([t1?.close(), t2?.close()]);
});

describe('A/B experiments', () => {
  it('answers the arm on REST, and the arm\'s server serves it', async () => {
    const before = [t1.stats.inferCalls, t2.stats.inferCalls];
    const arms = await armsOf(gw, keys);
    const a = arms.filter((x) => x === 'a').length;
    const b = arms.filter((x) => x === 'b').length;
    expect(a + b).toBe(keys.length);
    expect(a).toBeGreaterThan(60);
    expect(b).toBeGreaterThan(60);
    expect([t1.stats.inferCalls - before[0]!, t2.stats.inferCalls - before[1]!]).toEqual([a, b]);
    // Sticky: the same keys again land on the same arms.
    expect(await armsOf(gw, keys)).toEqual(arms);
  });

  it('answers the arm as gRPC trailing metadata, the same arm as REST for the same key', async () => {
    const client = v2Client(`127.0.0.1:${gw.gateway.grpcPort}`);
    try {
      for (const key of keys.slice(0, 20)) {
        const md = new grpc.Metadata();
        md.set('x-user-id', key);
        const trailers = await new Promise<grpc.Metadata>((resolve, reject) => {
          const request: Message = {
            model_name: 'linear',
            inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: ['1', '4'], contents: { fp32_contents: [1, 2, 3, 4] } }],
          };
          const c = client.raw.ModelInfer!.call(client.raw, request, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null) => {
            if (err) reject(err);
          }) as grpc.ClientUnaryCall;
          c.on('status', (s: grpc.StatusObject) => resolve(s.metadata));
        });
        const rest = await restArm(gw, { 'x-user-id': key });
        expect(trailers.get('x-infergate-variant')).toEqual([rest]);
        expect(trailers.get('x-infergate-target')).toEqual([`arm-${rest}`]);
      }
    } finally {
      client.close();
    }
  });

  it('gives every key the same arm from a second gateway started separately, and after it restarts', async () => {
    const mine = await armsOf(gw, keys);
    let other = await startLiveGateway(configText());
    try {
      expect(await armsOf(other, keys)).toEqual(mine);
      await other.close();
      other = await startLiveGateway(configText());
      expect(await armsOf(other, keys)).toEqual(mine);
    } finally {
      await other.close();
    }
  });

  it('keeps a keyless client on the arm it sends back; the override header forces one', async () => {
    for (let i = 0; i < 10; i++) {
      expect(await restArm(gw, { 'x-infergate-variant': 'b' })).toBe('b');
      expect(await restArm(gw, { 'x-infergate-variant': 'a' })).toBe('a');
    }
    const key = keys[0]!;
    const natural = await restArm(gw, { 'x-user-id': key });
    const forced = natural === 'a' ? 'b' : 'a';
    expect(await restArm(gw, { 'x-user-id': key, 'x-infergate-variant-override': forced })).toBe(forced);
  });

  it('changes weights and state through the admin API, live, as a config change', async () => {
    const list = await admin(gw.pool, 'GET', '/admin/experiments');
    expect(list.status).toBe(200);
    expect(list.json()).toMatchObject({
      experiments: [
        {
          name: 'linear-ab',
          model: 'linear',
          state: 'running',
          control: 'a',
          arms: [
            { name: 'a', weight: 50, effective_weight: 50, cut: null },
            { name: 'b', weight: 50, effective_weight: 50, cut: null },
          ],
        },
      ],
    });
    const before = await armsOf(gw, keys);
    const version = gw.gateway.live.current.version;

    const patched = await admin(gw.pool, 'PATCH', '/admin/experiments/linear-ab', JSON.stringify({ weights: { a: 20, b: 80 } }));
    expect(patched.status, patched.text()).toBe(200);
    expect(patched.json()).toMatchObject({
      version: version + 1,
      diff: expect.arrayContaining(['~ experiments.linear-ab.arms.a.weight: 50 -> 20', '~ experiments.linear-ab.arms.b.weight: 50 -> 80']),
    });
    // The running text was edited in place: its comments stay.
    expect(gw.gateway.live.current.text).toMatch(/salt: linear-2026-11 +# fixes the split/);
    const after = await armsOf(gw, keys);
    const moved = keys.filter((_, i) => before[i] !== after[i]);
    // Only a -> b moves, about 30% of the keys.
    for (const k of moved) expect([before[keys.indexOf(k)], after[keys.indexOf(k)]]).toEqual(['a', 'b']);
    expect(moved.length).toBeGreaterThan(30);
    expect(moved.length).toBeLessThan(90);

    const paused = await admin(gw.pool, 'PATCH', '/admin/experiments/linear-ab', JSON.stringify({ state: 'paused' }));
    expect(paused.status).toBe(200);
    expect(new Set(await armsOf(gw, keys))).toEqual(new Set(['a']));
    const view = (await admin(gw.pool, 'GET', '/admin/experiments')).json<{ experiments: { state: string; arms: { effective_weight: number }[] }[] }>();
    expect(view.experiments[0]!.state).toBe('paused');
    expect(view.experiments[0]!.arms.map((a) => a.effective_weight)).toEqual([100, 0]);

    // Refused changes leave everything as it runs.
    const running = gw.gateway.live.current.version;
    const bad = [
      ['/admin/experiments/nope', { state: 'running' }, 404],
      ['/admin/experiments/linear-ab', { weights: { c: 1 } }, 400],
      ['/admin/experiments/linear-ab', { weights: { a: -1 } }, 400],
      ['/admin/experiments/linear-ab', { state: 'stopped' }, 400],
      ['/admin/experiments/linear-ab', { weights: { a: 0, b: 0 } }, 400],
    ] as const;
    for (const [path, body, status] of bad) {
      const res = await admin(gw.pool, 'PATCH', path, JSON.stringify(body));
      expect(res.status, `${JSON.stringify(body)}: ${res.text()}`).toBe(status);
    }
    expect(gw.gateway.live.current.version).toBe(running);
    // Same auth as the rest of the admin API.
    expect((await admin(gw.pool, 'GET', '/admin/experiments', undefined, null)).status).toBe(401);
    expect((await admin(gw.pool, 'PATCH', '/admin/experiments/linear-ab', '{"state":"running"}', 'wrong')).status).toBe(401);

    const resumed = await admin(gw.pool, 'PATCH', '/admin/experiments/linear-ab', JSON.stringify({ state: 'running', weights: { a: 50, b: 50 } }));
    expect(resumed.status).toBe(200);
    expect(await armsOf(gw, keys)).toEqual(before);
  });
});
