import { z } from 'zod';
import type { RouteProblem } from './route-schema.js';

/**
 * A model's serving options, model-level keys beside its routing tree:
 *
 *   models:
 *     linear:
 *       backend: triton
 *       cache: { ttl_ms: 60000, max_entry_bytes: 1048576 }   # answers kept and served again (HIT)
 *       coalesce: true                                         # identical concurrent requests share one call
 *       batching: { max_batch_size: 32, max_queue_delay_ms: 2, max_queue_size: 1024 }
 *     scorer:
 *       backend: triton
 *       relay: true        # v2 REST bodies go to Triton as the client's bytes (InferenceService.relay)
 *
 * The first three apply at every leaf of the model's tree (and of its experiment arms). `relay` needs the request
 * as bytes, so it cannot be combined with them, which need it decoded; it never applies while an experiment or a
 * shadow covers the model (see ModelRoute.relayable and InferenceService.relay).
 */

export const SERVING_KEYS = ['cache', 'coalesce', 'batching', 'relay'] as const;

const cacheSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** How long an answer is served from the cache. */
  ttl_ms: z.number().int().min(1).max(30 * 24 * 3_600_000),
  /** Larger answers are not stored (they would crowd out many small ones). */
  max_entry_bytes: z.number().int().min(64).max(512 * 1024 * 1024).default(1024 * 1024),
});

const batchingSchema = z.strictObject({
  /** Rows (dim 0) in one backend call at most. */
  max_batch_size: z.number().int().min(2).max(65_536),
  /** Longest a request waits for others to join its batch. */
  max_queue_delay_ms: z.number().min(0).max(10_000).default(2),
  /** Requests waiting in this model's batches at most; beyond it 429. */
  max_queue_size: z.number().int().min(1).max(1_000_000).default(1_024),
});

const servingSchema = z.strictObject({
  cache: cacheSchema.optional(),
  coalesce: z.boolean().optional(),
  batching: batchingSchema.optional(),
  relay: z.boolean().optional(),
});

export interface ModelServingConfig {
  readonly cache?: { readonly ttl_ms: number; readonly max_entry_bytes: number };
  /** Identical concurrent requests share one backend call (default: on when the cache is). */
  readonly coalesce: boolean;
  readonly batching?: { readonly max_batch_size: number; readonly max_queue_delay_ms: number; readonly max_queue_size: number };
  /** v2 REST inference bodies are relayed as bytes where the model's routes allow it (see ModelRoute.relayable). */
  readonly relay?: true;
}

/** A model entry split into its routing node and its serving keys (an empty object when it has none). */
export function splitServing(value: unknown): { node: unknown; serving: Record<string, unknown> } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { node: value, serving: {} };
  const node: Record<string, unknown> = {};
  const serving: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) ((SERVING_KEYS as readonly string[]).includes(k) ? serving : node)[k] = v;
  return { node, serving };
}

/** The serving options, or undefined when the model sets none (problems are added with their key paths). */
export function parseServing(raw: Record<string, unknown>, path: readonly (string | number)[], problems: RouteProblem[]): ModelServingConfig | undefined {
  if (Object.keys(raw).length === 0) return undefined;
  const parsed = servingSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push({ path: [...path, ...issue.path.map((k) => (typeof k === 'number' ? k : String(k)))], message: issue.message });
    }
    return undefined;
  }
  const { cache, coalesce, batching, relay } = parsed.data;
  const cached = cache !== undefined && cache.enabled ? { ttl_ms: cache.ttl_ms, max_entry_bytes: cache.max_entry_bytes } : undefined;
  const coalesced = coalesce ?? cached !== undefined;
  if (relay === true && (cached !== undefined || coalesced || batching !== undefined)) {
    const others = [cached !== undefined ? 'cache' : '', coalesced ? 'coalesce' : '', batching !== undefined ? 'batching' : ''].filter((k) => k !== '');
    problems.push({
      path: [...path, 'relay'],
      message: `relay sends the client's bytes as they are, and ${others.join(', ')} need${others.length === 1 ? 's' : ''} the request decoded: use one or the other`,
    });
    return undefined;
  }
  return {
    ...(cached !== undefined ? { cache: cached } : {}),
    coalesce: coalesced,
    ...(batching !== undefined ? { batching } : {}),
    ...(relay === true ? { relay } : {}),
  };
}
