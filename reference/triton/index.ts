// A stand-in for NVIDIA Triton: the KServe v2 REST and gRPC protocols on real sockets, serving the deterministic
// models of models.ts. It shares no code with src/, so it can judge the gateway's codecs independently.
import { setTimeout as delay } from 'node:timers/promises';
import { listenBoth, type ListenOptions, type ReferenceServers } from '../common/listen.js';
import { createGrpcServer } from './grpc.js';
import type { InferHook } from './models.js';
import { createRestServer } from './rest.js';

export interface TritonReferenceOptions extends ListenOptions {
  /** Delay added to every inference call, to make load and timeout behaviour observable. */
  latencyMs?: number;
}

export interface TritonReference extends ReferenceServers {
  /** inferCalls counts inference requests received (REST, gRPC, each stream message), failed ones included. */
  stats: { inferCalls: number };
}

export async function startTritonReference(opts: TritonReferenceOptions = {}): Promise<TritonReference> {
  const latencyMs = opts.latencyMs ?? 0;
  const stats = { inferCalls: 0 };
  const onInfer: InferHook = async () => {
    stats.inferCalls++;
    if (latencyMs > 0) await delay(latencyMs);
  };

  const servers = await listenBoth(opts, createRestServer(onInfer), () => createGrpcServer(onInfer));
  return { ...servers, stats };
}
