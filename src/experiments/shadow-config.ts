import { z } from 'zod';
import type { RouteNodeConfig, RouteProblem, ShadowConfig } from '../config/route-schema.js';

/**
 * The `shadow:` key of a model in config:
 *
 *   models:
 *     ranker:
 *       backend: triton-a
 *       shadow:
 *         percent: 10            # 0-100, share of requests copied (sampled at random)
 *         max_concurrency: 16    # copies in flight at most; beyond it dropped and counted
 *         tolerance: 1e-5        # float outputs agree within this absolute difference; 0 = bit-exact
 *         target: triton-pool    # or backend/model/version (a leaf), or any routing node
 *         timeout_ms: 2000       # the shadow call's own deadline (never the client's)
 *
 * Parsed by route-schema.ts's parser (the node part goes through its node
 * parser, so references, ids and cycles are checked as for any node).
 */

/** Keys of `shadow:` that are not keys of its routing node. */
export const SHADOW_KEYS = ['percent', 'max_concurrency', 'tolerance'] as const;
export const DEFAULT_SHADOW_MAX_CONCURRENCY = 16;
export const DEFAULT_SHADOW_TIMEOUT_MS = 2_000;

const shadowSchema = z.strictObject({
  percent: z.number().min(0).max(100),
  max_concurrency: z.number().int().min(1).max(100_000).default(DEFAULT_SHADOW_MAX_CONCURRENCY),
  tolerance: z.number().min(0).default(0),
});

type NodeParser = (value: unknown, path: readonly (string | number)[], extra: readonly string[]) => RouteNodeConfig | undefined;

/** A model entry split into its routing node and its `shadow:` value (undefined when it has none). */
export function splitShadow(value: unknown): { node: unknown; shadow: unknown } {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, 'shadow')) {
    return { node: value, shadow: undefined };
  }
  const { shadow, ...node } = value as Record<string, unknown>;
  return { node, shadow: shadow ?? null };
}

/** A model's `shadow:`, or undefined after adding its problems (each with its key path). */
export function parseShadow(
  raw: unknown,
  path: readonly (string | number)[],
  problems: RouteProblem[],
  parseNode: NodeParser,
): ShadowConfig | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problems.push({ path, message: 'must be a map: { percent, max_concurrency?, tolerance?, timeout_ms?, and a node (target, backend, ...) }' });
    return undefined;
  }
  const value = raw as Record<string, unknown>;
  const own = Object.fromEntries(SHADOW_KEYS.filter((k) => Object.hasOwn(value, k)).map((k) => [k, value[k]]));
  const parsed = shadowSchema.safeParse(own);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const message = issue.code === 'invalid_type' && issue.input === undefined ? 'missing: a number from 0 to 100' : issue.message;
      problems.push({ path: [...path, ...issue.path.map((k) => (typeof k === 'number' ? k : String(k)))], message });
    }
  }
  const node = parseNode(value, path, SHADOW_KEYS);
  if (!parsed.success || node === undefined) return undefined;
  return {
    percent: parsed.data.percent,
    max_concurrency: parsed.data.max_concurrency,
    tolerance: parsed.data.tolerance,
    timeout_ms: node.timeout_ms ?? DEFAULT_SHADOW_TIMEOUT_MS,
    node,
  };
}
