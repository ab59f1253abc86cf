import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { call, postJson } from '../helpers/http.js';
import { LINEAR_REQUEST, startLiveGateway, type LiveGateway } from '../helpers/live.js';

/**
 * The guard end to end: a gateway whose model `linear` runs a guarded
 * experiment, control arm a on one reference Triton and arm b on another.
 * The results API reports both arms; when b's server stops, the guard cuts b
 * within its window and every request after that is served by a, without error.
 */

let t1: TritonReference;
let t2: TritonReference;
let gw: LiveGateway;

const configText = (): string => `# guard e2e
server:
  http: { host: 127.0.0.1, port: 0 }
  grpc: { host: 127.0.0.1, port: 0 }
  request_timeout_ms: 5000
  log_level: silent
auth: { enabled: false }
backends:
  t1: { kind: triton, protocol: rest, endpoints: ["${t1.httpEndpoint}"], health_check: { interval_ms: 0 } }
  t2: { kind: triton, protocol: rest, endpoints: ["${t2.httpEndpoint}"], health_check: { interval_ms: 0 } }
models:
  linear: { backend: t1 }
experiments:
  linear-guarded:
    model: linear
    key: { header: x-user-id }
    control: a
    arms:
      a: { weight: 50, backend: t1, id: arm-a }
      b: { weight: 50, backend: t2, id: arm-b }
    guard: { max_error_rate: 0.2, min_requests: 20, window_s: 3 }
`;

async function infer(key: string): Promise<{ status: number; variant: string }> {
  const res = await call(gw.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, { 'content-type': 'application/json', 'x-user-id': key });
  return { status: res.status, variant: String(res.headers['x-infergate-variant']) };
}

interface ArmReply {
  name: string;
  requests: number;
  errors: number;
  effective_weight: number;
  cut_reason?: string;
  outcomes: Record<string, { count: number }>;
}

async function results(): Promise<{ arms: ArmReply[]; comparisons: unknown[]; state: string; control: string }> {
  const res = await call(gw.pool, 'GET', '/v1/experiments/linear-guarded');
  expect(res.status, res.body.toString()).toBe(200);
  return JSON.parse(res.body.toString()) as { arms: ArmReply[]; comparisons: unknown[]; state: string; control: string };
}

const keys = Array.from({ length: 100 }, (_, i) => `user-${i}`);

beforeAll(async () => {
  [t1, t2] = await Promise.all([startTritonReference({ host: '127.0.0.1' }), startTritonReference({ host: '127.0.0.1' })]);
  gw = await startLiveGateway(configText());
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([t1?.close(), t2?.close()]);
});

describe('results and guard through the gateway', () => {
  it('takes outcomes by the request id the gateway answered', async () => {
    const ids = ['rid-1', 'rid-2', 'rid-3'];
    const served = await Promise.all(
      ids.map(async (id, i) => {
        const res = await call(gw.pool, 'POST', '/v2/models/linear/infer', LINEAR_REQUEST, {
          'content-type': 'application/json',
          'x-user-id': `outcome-user-${i}`,
          'x-request-id': id,
        });
        expect(res.status).toBe(200);
        return String(res.headers['x-infergate-variant']);
      }),
    );
    const posted = await postJson(gw.pool, '/v1/experiments/linear-guarded/outcomes', {
      outcomes: [...ids.map((request_id) => ({ request_id, outcome: 'bought', value: true })), { request_id: 'never-seen', outcome: 'bought' }],
    });
    expect(posted.status).toBe(202);
    expect(posted.json()).toMatchObject({ accepted: 3, unknown_ids: ['never-seen'] });
    const reply = await results();
    for (const arm of ['a', 'b']) {
      const count = served.filter((v) => v === arm).length;
      expect(reply.arms.find((x) => x.name === arm)!.outcomes.bought?.count ?? 0).toBe(count);
    }
  });

  it('reports both arms, takes outcomes by key, and a failing arm is cut within the window with 0 errors after', async () => {
    const first = await Promise.all(keys.map(infer));
    expect(first.every((r) => r.status === 200)).toBe(true);
    const onB = first.filter((r) => r.variant === 'b').length;
    expect(onB).toBeGreaterThan(20);

    const posted = await postJson(gw.pool, '/v1/experiments/linear-guarded/outcomes', { outcomes: keys.map((key) => ({ key, outcome: 'click', value: 1 })) });
    expect(posted.status).toBe(202);
    let reply = await results();
    expect(reply.state).toBe('running');
    const [a, b] = reply.arms;
    // Three more requests came from the request-id test above.
    expect(a!.requests + b!.requests).toBe(103);
    expect([a!.errors, b!.errors]).toEqual([0, 0]);
    expect(b!.outcomes.click!.count).toBe(onB);
    expect(b!.effective_weight).toBe(50);

    // b's server goes away: b's requests fail until the guard cuts it.
    await t2.close();
    const cutBy = Date.now() + 3_000 + 2_000;
    let failed = 0;
    while ((await results()).arms[1]!.cut_reason === undefined) {
      expect(Date.now()).toBeLessThan(cutBy);
      const batch = await Promise.all(keys.slice(0, 20).map(infer));
      failed += batch.filter((r) => r.status !== 200).length;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(failed).toBeGreaterThan(0);
    reply = await results();
    expect(reply.arms[1]!.cut_reason).toMatch(/error rate/);
    expect(reply.arms[1]!.effective_weight).toBe(0);
    expect(reply.arms[0]!.effective_weight).toBe(100);

    // After the cut: every key is served by the control arm, no error.
    const after = await Promise.all([...keys, ...keys].map(infer));
    expect(after.filter((r) => r.status !== 200)).toEqual([]);
    expect(new Set(after.map((r) => r.variant))).toEqual(new Set(['a']));
  }, 30_000);
});
