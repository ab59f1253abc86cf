import type { Backend } from '../src/backends/backend.js';
import { BackendCluster } from '../src/backends/cluster.js';
import { validateConfig } from '../src/config/load.js';
import { ModelRouter } from '../src/routing/model-router.js';
import { firstLeaf, type RouteContext, type RouteInput } from '../src/routing/route-tree.js';
import { silentLogger } from '../src/observability/logger.js';
import { withDefaultResilience } from '../src/resilience/resilient-backend.js';

/**
 * The routing decision's cost per request, with no I/O: resolve the public
 * model (one Map lookup) and walk its compiled tree to the leaf the first
 * attempt goes to. Run with 10 models and with 10,000 (configs generated in
 * memory, every model a tree: a leaf, a 90/10 split, a fallback of two
 * weighted groups, a match on a header and a version), requests spread over
 * the models in a random order. The ratio 10k/10 shows the cost does not
 * grow with the number of routes (what grows is cache misses, not work).
 */

const SIZES = [10, 10_000] as const;
/** Timed requests per round, and rounds per size (the median round is reported). */
const REQUESTS = 1_000_000;
const ROUNDS = 7;
/** Requests walk the models in this many precomputed random positions (a power of two). */
const ORDER_LENGTH = 1 << 16;

const BACKENDS = ['triton-a', 'triton-b', 'triton-c', 'ts'] as const;

/** A model's tree by its index: the four shapes in turn. */
function modelTree(i: number): unknown {
  switch (i % 4) {
    case 0:
      return { backend: 'triton-a' };
    case 1:
      return { weighted: [{ weight: 90, backend: 'triton-a' }, { weight: 10, backend: 'triton-b', model: 'v2' }] };
    case 2:
      return {
        timeout_ms: 2000,
        fallback: [
          { weighted: [{ weight: 50, backend: 'triton-a' }, { weight: 50, backend: 'triton-b' }] },
          { weighted: [{ weight: 50, backend: 'triton-c' }, { weight: 50, backend: 'ts', id: `ts-${i}` }] },
        ],
      };
    default:
      return {
        match: [
          { when: { header: 'x-tenant', equals: 'acme' }, backend: 'triton-b' },
          { when: [{ version: { in: ['2', '3'] } }, { header: 'x-region', regex: '^eu-[0-9]+$' }], target: 'pool' },
        ],
        default: { target: 'pool' },
      };
  }
}

function buildRouter(models: number): { router: ModelRouter; names: string[]; compileMs: number } {
  const names = Array.from({ length: models }, (_, i) => `model-${i}`);
  const raw = {
    backends: Object.fromEntries(BACKENDS.map((b) => [b, { kind: b === 'ts' ? 'torchserve' : 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] }])),
    targets: { pool: { weighted: [{ weight: 3, backend: 'triton-a' }, { weight: 1, backend: 'triton-c' }] } },
    models: Object.fromEntries(names.map((name, i) => [name, modelTree(i)])),
  };
  const started = performance.now();
  const config = validateConfig(raw);
  // Endpoints that are never called: the decision stops at the leaf.
  const clusters = new Map(
    BACKENDS.map((b) => [b, new BackendCluster(b, b === 'ts' ? 'torchserve' : 'triton', 'grpc', 30_000, [{ endpoint: `${b}:1` } as Backend])]),
  );
  const router = new ModelRouter(config, withDefaultResilience(clusters, silentLogger));
  return { router, names, compileMs: performance.now() - started };
}

/** A request as the API hands it over: a version, parameters, and headers read on demand. */
const HEADERS: Record<string, string> = { 'x-tenant': 'globex', 'x-region': 'eu-1' };
const CTX: RouteContext = { header: (name) => HEADERS[name] };
const REQ: RouteInput = { version: '2' };

function timeRound(router: ModelRouter, order: readonly string[]): number {
  let sink = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS; i++) {
    const target = router.resolve(order[i & (ORDER_LENGTH - 1)]!, '');
    sink += firstLeaf(target.route.tree, REQ, CTX).id.length;
  }
  const ns = Number(process.hrtime.bigint() - started);
  if (sink === 0) throw new Error('unreachable: keeps the loop from being optimised away');
  return ns / REQUESTS;
}

interface SizeResult {
  readonly models: number;
  /** How many distinct models the requests went to. */
  readonly requested_models: number;
  readonly ns_per_request: number;
  readonly compile_ms: number;
}

export interface RoutingBenchResult {
  readonly bench: 'routing';
  readonly requests_per_round: number;
  readonly rounds: number;
  readonly sizes: readonly SizeResult[];
  /** ns/request with 10,000 models over ns/request with 10, requests spread over every model. */
  readonly ratio_10k_to_10: number;
  /** The same 10,000-model config with requests to 10 of its models: the work per request, without the cache misses. */
  readonly ratio_10k_hot10_to_10: number;
  readonly node: string;
}

function measure(router: ModelRouter, names: readonly string[], requested: number, compileMs: number): SizeResult {
  const pool = names.slice(0, requested);
  const order = Array.from({ length: ORDER_LENGTH }, () => pool[Math.floor(Math.random() * pool.length)]!);
  timeRound(router, order); // warm-up: let the JIT settle
  const rounds = Array.from({ length: ROUNDS }, () => timeRound(router, order)).sort((a, b) => a - b);
  return { models: names.length, requested_models: requested, ns_per_request: round(rounds[ROUNDS >> 1]!), compile_ms: round(compileMs) };
}

export async function run(): Promise<RoutingBenchResult> {
  const sizes: SizeResult[] = [];
  for (const models of SIZES) {
    const { router, names, compileMs } = buildRouter(models);
    sizes.push(measure(router, names, models, compileMs));
    // With every model in play, a request touches trees no other recent request did: cache misses, not
    // more work. Ten hot models in the big config show the work alone.
    if (models > 10) sizes.push(measure(router, names, 10, compileMs));
  }
  const ns = (models: number, requested: number) => sizes.find((s) => s.models === models && s.requested_models === requested)!.ns_per_request;
  return {
    bench: 'routing',
    requests_per_round: REQUESTS,
    rounds: ROUNDS,
    sizes,
    ratio_10k_to_10: round(ns(10_000, 10_000) / ns(10, 10)),
    ratio_10k_hot10_to_10: round(ns(10_000, 10) / ns(10, 10)),
    node: process.version,
  };
}

export function format(result: RoutingBenchResult): string {
  const lines = result.sizes.map(
    (s) =>
      `  ${String(s.models).padStart(6)} models, requests to ${String(s.requested_models).padStart(6)}: ` +
      `${s.ns_per_request.toFixed(1).padStart(7)} ns/request   (config validated + compiled in ${s.compile_ms.toFixed(1)} ms)`,
  );
  return [
    `routing decision (resolve + tree walk to a leaf, no I/O), median of ${result.rounds} x ${result.requests_per_round} requests:`,
    ...lines,
    `  ratio 10k/10: ${result.ratio_10k_to_10.toFixed(2)} (requests over all 10k models); ${result.ratio_10k_hot10_to_10.toFixed(2)} (10k models, 10 requested)`,
  ].join('\n');
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
