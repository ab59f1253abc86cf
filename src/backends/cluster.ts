import { unavailable } from '../core/errors.js';
import type { Backend, BackendKind, BackendProtocol } from './backend.js';

/** Background readiness checks of a backend's models (see routing/model-health.ts). */
export interface HealthCheckSettings {
  /** 0 turns background checks off for this backend. */
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive failed checks before a ready model is marked unready (one success marks it ready again). */
  readonly unhealthyAfter: number;
}

/**
 * A named backend from the config: one adapter per endpoint, all of one server
 * kind and protocol. Picks an endpoint per call in round-robin order.
 */
export class BackendCluster {
  private next = 0;
  private closed = false;

  constructor(
    readonly name: string,
    readonly kind: BackendKind,
    readonly protocol: BackendProtocol,
    readonly timeoutMs: number,
    readonly endpoints: readonly Backend[],
    readonly healthCheck: HealthCheckSettings = { intervalMs: 0, timeoutMs: 1_000, unhealthyAfter: 1 },
  ) {}

  pick(): Backend {
    if (this.closed) throw unavailable(`backend '${this.name}' is shut down`);
    const endpoint = this.endpoints[this.next % this.endpoints.length];
    this.next = (this.next + 1) % this.endpoints.length;
    if (endpoint === undefined) throw unavailable(`backend '${this.name}' has no endpoints`);
    return endpoint;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled(this.endpoints.map((e) => e.close()));
  }
}
