import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, spawnTritonReference, type ChildServer } from '../helpers/processes.js';
import {
  grpc,
  grpcFailures,
  grpcInfer,
  NO_CHECKS,
  restFailures,
  restInfer,
  startFaultGateway,
  steadyLoad,
  until,
  type FaultGateway,
  type GrpcOutcome,
  type RestOutcome,
} from './fault-kit.js';

/**
 * The key failure: one of two backend endpoints is a real server process that
 * dies (SIGKILL) while clients keep the gateway busy, then comes back on the
 * same ports. Health checks are off, so the circuit breaker alone takes the
 * dead endpoint out of rotation and puts it back. The same two processes sit
 * behind a REST backend and a gRPC backend, each loaded by its own clients.
 */

const RESET_TIMEOUT_MS = 1500;
const PROBES = 1;
const BREAKER = { minimum_requests: 5, reset_timeout_ms: RESET_TIMEOUT_MS, window_ms: 5000, half_open_probes: PROBES };
const BACKENDS = ['kill-rest', 'kill-grpc'] as const;

let ports: { http: number; grpc: number }[];
const children: ChildServer[] = [];
let gw: FaultGateway;

beforeAll(async () => {
  ports = [];
  for (let i = 0; i < 2; i++) ports.push({ http: await freePort(), grpc: await freePort() });
  children.push(...(await Promise.all(ports.map((p) => spawnTritonReference({ httpPort: p.http, grpcPort: p.grpc })))));
  const common = { kind: 'triton', load_balancing: { policy: 'round_robin' }, timeout_ms: 5000, circuit_breaker: BREAKER, ...NO_CHECKS };
  gw = await startFaultGateway({
    backends: {
      'kill-rest': { ...common, protocol: 'rest', endpoints: children.map((c) => c.http) },
      'kill-grpc': { ...common, protocol: 'grpc', endpoints: children.map((c) => c.grpc) },
    },
    models: {
      'rest-linear': { backend: 'kill-rest', model: 'linear' },
      'grpc-linear': { backend: 'kill-grpc', model: 'linear' },
    },
  });
}, 30_000);

afterAll(async () => {
  await gw?.close();
  await Promise.all(children.map((c) => c.kill('SIGKILL')));
});

interface Sample {
  readonly state: string;
  readonly openedAt: number | undefined;
  readonly nextProbeAt: number | undefined;
  readonly calls: number;
  readonly ejected: boolean;
}

describe('an endpoint process killed mid-load (SIGKILL), then restarted on the same ports', () => {
  it(
    'clients see 0 errors over REST and gRPC; the breaker opens and ejects the endpoint, only half-open probes reach it while dead, ' +
      'and it closes by itself and the endpoint serves again once the process is back',
    async () => {
      // Every 5 ms, the dead endpoint's breaker and call count, read synchronously from the running gateway.
      const samples: Record<string, Sample[]> = { 'kill-rest': [], 'kill-grpc': [] };
      const sample = (): void => {
        for (const name of BACKENDS) {
          const e = gw.endpoint(name, 1);
          samples[name]!.push({
            state: e.breaker.state,
            openedAt: e.breaker.openedAt,
            nextProbeAt: e.breaker.nextProbeAt,
            calls: e.calls,
            ejected: e.ejected,
          });
        }
      };
      const sampler = setInterval(sample, 5);

      // 16 clients in all: 8 over REST (REST backend), 8 over gRPC (gRPC backend); 60 s is only a safety bound.
      const rest = steadyLoad<RestOutcome>(8, () => restInfer(gw.http, 'rest-linear'), 60_000);
      const grpcLoad = steadyLoad<GrpcOutcome>(8, () => grpcInfer(gw.grpc, 'grpc-linear', 5_000), 60_000);
      try {
        await until('both endpoints of both backends serve', () => BACKENDS.every((b) => gw.endpoint(b, 1).calls >= 20 && gw.endpoint(b, 0).calls >= 20), 10_000);

        const killed = await children[1]!.kill('SIGKILL');
        expect(killed.signal).toBe('SIGKILL');

        await until('both breakers of the killed endpoint open', () => BACKENDS.every((b) => gw.endpoint(b, 1).breaker.state === 'open'), 5_000);
        for (const b of BACKENDS) {
          const e = gw.endpoint(b, 1);
          expect(e.ejected, b).toBe(true);
          expect(e.reason, b).toMatch(/^breaker: /);
          expect(e.breaker.nextProbeAt! - e.breaker.openedAt!, b).toBe(RESET_TIMEOUT_MS);
          expect(gw.endpoint(b, 0).breaker.state, b).toBe('closed');
        }
        // Stay dead through at least one half-open period: the probe fails and the breaker opens again.
        const firstOpened = Object.fromEntries(BACKENDS.map((b) => [b, gw.endpoint(b, 1).breaker.openedAt]));
        await until(
          'each breaker re-opened after a failed probe',
          () => BACKENDS.every((b) => gw.endpoint(b, 1).breaker.state === 'open' && gw.endpoint(b, 1).breaker.openedAt !== firstOpened[b]),
          RESET_TIMEOUT_MS * 4,
        );
        const deadCalls = Object.fromEntries(BACKENDS.map((b) => [b, gw.endpoint(b, 1).calls]));

        children[1] = await spawnTritonReference({ httpPort: ports[1]!.http, grpcPort: ports[1]!.grpc });

        await until(
          'each breaker closed by itself and the endpoint took 20 more calls',
          () => BACKENDS.every((b) => gw.endpoint(b, 1).breaker.state === 'closed' && gw.endpoint(b, 1).calls >= deadCalls[b]! + 20),
          20_000,
        );
      } finally {
        clearInterval(sampler);
        await Promise.all([rest.stop(), grpcLoad.stop()]);
      }

      // 0 client errors over the whole run, on both surfaces.
      expect(restFailures(rest.results)).toEqual([]);
      expect(grpcFailures(grpcLoad.results)).toEqual([]);
      expect(rest.results.length).toBeGreaterThan(100);
      expect(grpcLoad.results.length).toBeGreaterThan(100);
      expect(grpcLoad.results.every((r) => r.code === grpc.status.OK)).toBe(true);

      for (const b of BACKENDS) {
        const seen = samples[b]!;
        // While open, the endpoint is ejected and its call count does not move: each open period
        // (told apart by openedAt) shows one count from its first sample to its last.
        const periods = new Map<number, Set<number>>();
        for (const s of seen) {
          if (s.state !== 'open') continue;
          expect(s.ejected, `${b}: ejected while open`).toBe(true);
          const calls = periods.get(s.openedAt!) ?? new Set<number>();
          calls.add(s.calls);
          periods.set(s.openedAt!, calls);
        }
        expect(periods.size, `${b}: open periods seen`).toBeGreaterThanOrEqual(2);
        const perPeriod = [...periods].sort(([a], [z]) => a - z).map(([openedAt, calls]) => ({ openedAt, calls: [...calls] }));
        for (const p of perPeriod) expect(p.calls, `${b}: calls during the open period from ${p.openedAt}`).toHaveLength(1);
        // From one open period to the next (a half-open period whose probe failed): the probe(s) and nothing else.
        for (let i = 1; i < perPeriod.length; i++) {
          const delta = perPeriod[i]!.calls[0]! - perPeriod[i - 1]!.calls[0]!;
          expect(delta, `${b}: calls let through by half-open period ${i}`).toBeGreaterThanOrEqual(1);
          expect(delta, `${b}: calls let through by half-open period ${i}`).toBeLessThanOrEqual(PROBES);
        }
        const final = gw.endpoint(b, 1);
        expect([final.breaker.state, final.ejected]).toEqual(['closed', false]);
      }
    },
    45_000,
  );
});
