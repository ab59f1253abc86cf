import { GatewayError } from '../core/errors.js';
import type { CancelSignal } from '../core/cancel.js';

/**
 * Requests in flight across both listeners: the gateway-wide load limit, and
 * what graceful shutdown waits for.
 *
 * A request is admitted before its body is read; over `maxInFlight` it is
 * refused at once (UNAVAILABLE with Retry-After), so an overload costs a
 * short answer rather than memory. Each admitted request gets an abort
 * signal that fires when its client goes away (CANCELLED) or when shutdown
 * gives up waiting for it (UNAVAILABLE): the backend call stops and the
 * client gets a clear error instead of a cut connection.
 */
export class RequestAdmission {
  private readonly active = new Set<RequestTicket>();
  private idleWaiters: (() => void)[] = [];
  private isDraining = false;
  private refused = 0;

  constructor(private readonly maxInFlight: number) {}

  get inFlight(): number {
    return this.active.size;
  }

  /** Requests refused over the limit since the start (the metrics). */
  get rejected(): number {
    return this.refused;
  }

  /** True once shutdown has begun (responses then ask clients to close their connections). */
  get draining(): boolean {
    return this.isDraining;
  }

  /** A ticket for a request that may start; throws UNAVAILABLE over the limit. End the ticket when the response is done. */
  admit(): RequestTicket {
    if (this.active.size >= this.maxInFlight) {
      this.refused++;
      throw new GatewayError(
        'UNAVAILABLE',
        `the gateway is at its limit of ${this.maxInFlight} requests in flight (server.max_in_flight_requests); retry shortly`,
        { retryAfterMs: 1_000 },
      );
    }
    const ticket = new RequestTicket(this);
    this.active.add(ticket);
    return ticket;
  }

  /** Shutdown has begun: readiness is false and responses close their connections. */
  startDraining(): void {
    this.isDraining = true;
  }

  /** Resolves true once no request is in flight, or false after `timeoutMs`. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.active.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      this.idleWaiters.push(done);
    });
  }

  /** Aborts every request in flight with `reason` (the drain time is up). */
  abortAll(reason: GatewayError): void {
    for (const ticket of this.active) ticket.abort(reason);
  }

  /** @internal RequestTicket.end() */
  release(ticket: RequestTicket): void {
    if (!this.active.delete(ticket) || this.active.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * One admitted request: its abort signal (the ticket itself, a CancelSignal
 * with a plain listener list rather than an AbortController: the hot path
 * makes one per request), and end() when its response is done (either way).
 */
export class RequestTicket implements CancelSignal {
  private ended = false;
  private abortReason: GatewayError | undefined;
  /** Listeners of 'abort'; a request has a few at most (its backend call, a queue wait). */
  private listeners: (() => void)[] | undefined;

  constructor(private readonly owner: RequestAdmission) {}

  get signal(): CancelSignal {
    return this;
  }

  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  get reason(): GatewayError | undefined {
    return this.abortReason;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    // As with an AbortSignal, a listener added once aborted never runs.
    if (this.abortReason === undefined) (this.listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const listeners = this.listeners;
    if (listeners === undefined) return;
    const i = listeners.lastIndexOf(listener);
    if (i >= 0) listeners.splice(i, 1);
  }

  /** Stops the request's backend work; its handler answers with `reason`. */
  abort(reason: GatewayError): void {
    if (this.ended || this.abortReason !== undefined) return;
    this.abortReason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners === undefined) return;
    for (const listener of listeners) {
      try {
        listener();
      } catch (err) {
        // As EventTarget does: one listener's failure does not keep the others from running, and is reported.
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }

  /** The client went away before its answer. */
  cancel(): void {
    // gRPC reports a cancel for calls already answered too: no error (and its stack) is made for those.
    if (this.ended || this.abortReason !== undefined) return;
    this.abort(new GatewayError('CANCELLED', 'the client closed the connection before the answer'));
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.listeners = undefined;
    this.owner.release(this);
  }
}
