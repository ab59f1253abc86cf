import type { Balancer, RandomSource } from './balancer.js';
import { ConsistentHashBalancer } from './consistent-hash.js';
import { LeastRequestBalancer } from './least-request.js';
import { RoundRobinBalancer } from './round-robin.js';

export type { Balancer, RandomSource } from './balancer.js';
export { ConsistentHashBalancer } from './consistent-hash.js';
export { hash32 } from './hash.js';
export { LeastRequestBalancer } from './least-request.js';
export { RoundRobinBalancer } from './round-robin.js';

export const BALANCER_POLICIES = ['least_request', 'round_robin', 'consistent_hash'] as const;
export type BalancerPolicy = (typeof BALANCER_POLICIES)[number];

export interface BalancerSpec {
  readonly policy: BalancerPolicy;
  /** host:port per endpoint, in config order. */
  readonly addresses: readonly string[];
  /** Weight per endpoint (round_robin and consistent_hash; least_request ignores them). */
  readonly weights: readonly number[];
  /** The cluster's in-flight calls per endpoint (least_request, and consistent_hash without a key). */
  readonly outstanding: ArrayLike<number>;
  readonly random?: RandomSource;
}

/** Builds a policy's balancer once, at config load. */
export function createBalancer(spec: BalancerSpec): Balancer {
  const leastRequest = (): Balancer => new LeastRequestBalancer(spec.outstanding, spec.random);
  switch (spec.policy) {
    case 'least_request':
      return leastRequest();
    case 'round_robin':
      return new RoundRobinBalancer(spec.weights);
    case 'consistent_hash':
      return new ConsistentHashBalancer(
        spec.addresses.map((address, i) => ({ address, weight: spec.weights[i] ?? 1 })),
        leastRequest(),
      );
  }
}
