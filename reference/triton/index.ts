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
  /** inferCalls counts inference requests received (REST, gRPC, each stream message), failed ones included. */
  stats: { inferCalls: number };
  /**
   * Makes inference calls misbehave from now on (undefined: healthy). Metadata, readiness and health answer
   * normally. A call takes the fault in effect when it arrives; calls already hung stay hung until close().
   */
  setFault(fault: TritonFault | undefined): void;
}

export async function startTritonReference(opts: TritonReferenceOptions = {}): Promise<TritonReference> {
  const latencyMs = opts.latencyMs ?? 0;
  const stats = { inferCalls: 0 };
  let fault: TritonFault | undefined;
  // Hung calls wait on this; close() settles it so that their handlers finish instead of lingering as
  // promises that nothing will ever resolve (their sockets are dropped by close() anyway).
  let closed: () => void = () => {};
  const closing = new Promise<void>((resolve) => {
    closed = resolve;
  });

  const onInfer: InferHook = async () => {
    stats.inferCalls++;
    const current = fault;
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

  const servers = await listenBoth(opts, createRestServer(onInfer), () => createGrpcServer(onInfer));
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
