// A stand-in for NVIDIA Triton: the KServe v2 REST and gRPC protocols on real sockets, serving the deterministic
// models of models.ts. It shares no code with src/, so it can judge the gateway's codecs independently.
import { setTimeout as delay } from 'node:timers/promises';
import { listenBoth, type ListenOptions, type ReferenceServers } from '../common/listen.js';
import { createGrpcServer } from './grpc.js';
import { TritonError, type InferHook } from './models.js';
import { createRestServer } from './rest.js';

export interface TritonReferenceOptions extends ListenOptions {
  /** Delay added to every inference call, to make load and timeout behaviour observable. */
  latencyMs?: number;
  /**
   * At most this many inference calls run at once (default: unlimited); the others wait FIFO for a slot. A call
   * holds its slot while its latency (latencyMs, an injected latency or hang) elapses, so with latencyMs 5 and
   * maxConcurrency 1 the server answers at most ~200 calls/s whatever their batch size: the cost of a call is
   * per call, not per row, like a GPU server's.
   */
  maxConcurrency?: number;
}

/**
 * How inference calls misbehave, for resilience tests. The front ends map an error through their usual
 * TritonError mapping: REST answers 503 / 500 with {"error": message}, gRPC the status of the same name with
 * the message as details (a stream gets it as error_message and goes on).
 */
export type TritonFault =
  | { kind: 'error'; status: 'UNAVAILABLE' | 'INTERNAL'; message?: string }
  | { kind: 'hang' }
  | { kind: 'latency'; ms: number };

export interface TritonReference extends ReferenceServers {
  /**
   * inferCalls counts inference requests received (REST, gRPC, each stream message), failed ones included;
   * activeStreams is the number of ModelStreamInfer calls open now (a call closes when it ends or is cancelled);
   * lastHeaders holds the REST headers or gRPC metadata of the latest of those requests.
   */
  stats: { inferCalls: number; activeStreams: number; lastHeaders?: Readonly<Record<string, string>> };
  /**
   * Makes inference calls misbehave from now on (undefined: healthy). Metadata, readiness and health answer
   * normally. A call takes the fault in effect when it arrives; calls already hung stay hung until close().
   */
  setFault(fault: TritonFault | undefined): void;
}

export async function startTritonReference(opts: TritonReferenceOptions = {}): Promise<TritonReference> {
  const latencyMs = opts.latencyMs ?? 0;
  const maxConcurrency = opts.maxConcurrency;
  if (maxConcurrency !== undefined && !(Number.isSafeInteger(maxConcurrency) && maxConcurrency >= 1)) {
    throw new RangeError(`maxConcurrency must be a positive integer, got ${maxConcurrency}`);
  }
  const slots = new Slots(maxConcurrency ?? Infinity);
  const stats: TritonReference['stats'] = { inferCalls: 0, activeStreams: 0 };
  let fault: TritonFault | undefined;
  // Hung calls wait on this; close() settles it so that their handlers finish instead of lingering as
  // promises that nothing will ever resolve (their sockets are dropped by close() anyway).
  let closed: () => void = () => {};
  const closing = new Promise<void>((resolve) => {
    closed = resolve;
  });

  const onInfer: InferHook = async (headers) => {
    stats.inferCalls++;
    stats.lastHeaders = headers;
    const current = fault;
    await slots.acquire();
    try {
      await runCall(current);
    } finally {
      slots.release();
    }
  };

  const runCall = async (current: TritonFault | undefined): Promise<void> => {
    if (latencyMs > 0) await delay(latencyMs);
    if (current === undefined) return;
    switch (current.kind) {
      case 'latency':
        if (current.ms > 0) await delay(current.ms);
        return;
      case 'error':
        throw new TritonError(current.status, current.message ?? `injected fault: ${current.status}`);
      case 'hang':
        await closing;
        throw new TritonError('UNAVAILABLE', 'server shutting down');
    }
  };

  const streams = { opened: () => void stats.activeStreams++, closed: () => void stats.activeStreams-- };
  const servers = await listenBoth(opts, createRestServer(onInfer), () => createGrpcServer(onInfer, streams));
  return {
    ...servers,
    stats,
    setFault: (next) => {
      fault = next === undefined ? undefined : { ...next };
    },
    close: () => {
      closed();
      return servers.close();
    },
  };
}

/** A counting semaphore with a FIFO wait queue. */
class Slots {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  acquire(): Promise<void> | void {
    if (this.busy < this.limit) {
      this.busy++;
      return;
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Hands the slot straight to the next waiter, if any (so a newcomer cannot overtake the queue). */
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.busy--;
  }
}
