// A stand-in for TensorFlow Serving: its REST (8501-style) and gRPC (8500-style) APIs on real sockets, serving
// the deterministic models of models.ts. It shares no code with src/, so it can judge the gateway's codecs
// independently.
import { setTimeout as delay } from 'node:timers/promises';
import { listenBoth, type ListenOptions, type ReferenceServers } from '../common/listen.js';
import { createGrpcServer } from './grpc.js';
import type { InferHook } from './models.js';
import { createRestServer } from './rest.js';

export interface TfServingReferenceOptions extends ListenOptions {
  /** Delay added to every predict call, to make load and timeout behaviour observable. */
  latencyMs?: number;
  /**
   * How gRPC Predict writes output values: 'typed' *_val fields like real TF Serving (the default), or raw
   * 'tensor_content'. DT_STRING always uses string_val.
   */
  responseForm?: 'typed' | 'tensor_content';
  /** In the typed form, send an output whose elements are all equal as a single element (TF's broadcast form). */
  broadcastScalars?: boolean;
}

export interface TfServingReference extends ReferenceServers {
  /** inferCalls counts predict requests received (REST and gRPC), failed ones included. */
  stats: { inferCalls: number };
}

export async function startTfServingReference(opts: TfServingReferenceOptions = {}): Promise<TfServingReference> {
  const latencyMs = opts.latencyMs ?? 0;
  const stats = { inferCalls: 0 };
  const onInfer: InferHook = async () => {
    stats.inferCalls++;
    if (latencyMs > 0) await delay(latencyMs);
  };

  const servers = await listenBoth(opts, createRestServer(onInfer), () => createGrpcServer(onInfer, {
    responseForm: opts.responseForm ?? 'typed',
    broadcastScalars: opts.broadcastScalars ?? false,
  }));
  return { ...servers, stats };
}
