import type { ResilientBackend } from '../resilience/resilient-backend.js';
import { armNode, experimentSettings, type ExperimentConfig } from '../config/experiment-schema.js';
import type { RouteNodeConfig } from '../config/route-schema.js';
import type { Logger } from '../observability/logger.js';
import type { RequestContext } from '../routing/inference-service.js';
import { compileTree, type LeafNode, type RouteNode, type ServingObservers } from '../routing/route-tree.js';
import type { ArmAssignment, ExperimentSplitter } from '../routing/traffic-hooks.js';
import { armAt, BUCKETS, bucketBounds, stickyBucket } from './sticky-hash.js';
import type { ArmControl, ArmObservation, ExperimentRecorder, ExperimentSettings } from './types.js';
import type { ModelServingConfig } from '../config/serving-schema.js';

/**
 * Sticky A/B assignment: which arm of a model's experiment a request runs on.
 *
 * Per request, the first that applies:
 *   1. the experiment is paused or ended: the control arm;
 *   2. the override header (unless disabled) names an arm: that arm (testers);
 *   3. the request carries the sticky key: the arm owning hash(salt, key)'s bucket;
 *   4. the request sends back an arm (x-infergate-variant) with weight > 0: that arm;
 *   5. else a random bucket: split by weight.
 * Arms own contiguous bucket ranges in config order, so the same key lands on
 * the same arm in every process, and moving weight moves only the keys of the
 * buckets that change hands. An arm cut by the guard (cutArm) keeps its range,
 * but its requests go to the control arm.
 */

/** The response header (REST) / trailing metadata (gRPC) naming the arm; a client may send it back to stay on it. */
export const VARIANT_HEADER = 'x-infergate-variant';

/** The no-op recorder, until the results module plugs its own in. */
export const NO_RECORDER: ExperimentRecorder = { recordRequest: () => {} };

/** One arm, compiled for one runtime. */
export interface CompiledArm {
  readonly name: string;
  readonly node: RouteNode;
  readonly leaves: readonly LeafNode[];
}

export interface CompiledExperiment {
  readonly settings: ExperimentSettings;
  /** In the order of settings.arms. */
  readonly arms: readonly CompiledArm[];
}

export interface ArmCut {
  readonly reason: string;
  readonly at: Date;
}

/** What GET /admin/experiments shows of one experiment. */
export interface ExperimentStatus {
  readonly name: string;
  readonly model: string;
  readonly state: ExperimentSettings['state'];
  readonly control: string;
  readonly key_header: string;
  readonly salt: string;
  /** null when overrides are disabled. */
  readonly override_header: string | null;
  readonly arms: readonly {
    readonly name: string;
    /** The weight in config. */
    readonly weight: number;
    /** The share of traffic it gets now, in the same units: 0 when cut or when the experiment is not running (control gets the rest). */
    readonly effective_weight: number;
    readonly cut: { readonly reason: string; readonly at: string } | null;
  }[];
}

export interface SplitterOptions {
  readonly recorder?: ExperimentRecorder;
  readonly logger?: Logger;
  /** [0, 1) draws for requests without a key; Math.random by default. */
  readonly random?: () => number;
  /** What hears the arms' batchers (the gateway's metrics). */
  readonly observers?: ServingObservers;
}

interface Running {
  readonly settings: ExperimentSettings;
  readonly arms: readonly (CompiledArm & { readonly weight: number; readonly assignment: ArmAssignment })[];
  readonly byName: ReadonlyMap<string, number>;
  readonly bounds: Uint32Array;
  readonly control: ArmAssignment;
  readonly cuts: Map<string, ArmCut>;
}

export class StickySplitter implements ExperimentSplitter, ArmControl {
  private readonly byModel = new Map<string, Running>();
  private readonly byName = new Map<string, Running>();
  private readonly recorder: ExperimentRecorder;
  private readonly random: () => number;

  constructor(
    experiments: readonly CompiledExperiment[],
    private readonly opts: SplitterOptions = {},
  ) {
    this.recorder = opts.recorder ?? NO_RECORDER;
    this.random = opts.random ?? Math.random;
    for (const e of experiments) {
      const s = e.settings;
      const arms = e.arms.map((arm, i) => ({
        ...arm,
        weight: s.arms[i]?.weight ?? 0,
        assignment: { experiment: s.name, arm: arm.name, node: arm.node },
      }));
      const byName = new Map(arms.map((a, i) => [a.name, i]));
      const controlIndex = byName.get(s.control);
      if (controlIndex === undefined) throw new Error(`experiment '${s.name}': unknown control arm '${s.control}'`);
      const running: Running = {
        settings: s,
        arms,
        byName,
        bounds: bucketBounds(arms.map((a) => a.weight)),
        control: arms[controlIndex]!.assignment,
        cuts: new Map(),
      };
      this.byModel.set(s.model, running);
      this.byName.set(s.name, running);
    }
  }

  get size(): number {
    return this.byName.size;
  }

  covers(model: string): boolean {
    return this.byModel.has(model);
  }

  assign(model: string, ctx: RequestContext): ArmAssignment | undefined {
    const e = this.byModel.get(model);
    if (e === undefined) return undefined;
    const s = e.settings;
    if (s.state !== 'running') return e.control;
    const header = ctx.header;
    if (header !== undefined) {
      if (s.overrideHeader !== undefined) {
        const forced = header(s.overrideHeader);
        const i = forced !== undefined ? e.byName.get(forced) : undefined;
        if (i !== undefined) return e.arms[i]!.assignment;
      }
      const key = header(s.key.header);
      if (key !== undefined && key !== '') return this.effective(e, armAt(e.bounds, stickyBucket(s.salt, key)));
      const sent = header(VARIANT_HEADER);
      const i = sent !== undefined ? e.byName.get(sent) : undefined;
      if (i !== undefined) {
        const arm = e.arms[i]!;
        if (arm.weight > 0 && !e.cuts.has(arm.name)) return arm.assignment;
      }
    }
    const bucket = Math.min(BUCKETS - 1, Math.floor(this.random() * BUCKETS));
    return this.effective(e, armAt(e.bounds, bucket));
  }

  record(assignment: ArmAssignment, observation: ArmObservation): void {
    // Traffic of a paused or ended experiment (all on control) is not a result of the experiment.
    if (this.byName.get(assignment.experiment)?.settings.state !== 'running') return;
    try {
      this.recorder.recordRequest(assignment.experiment, assignment.arm, observation);
    } catch (err) {
      this.opts.logger?.warn({ err: (err as Error).message, experiment: assignment.experiment }, 'experiment recorder failed');
    }
  }

  /** The guard's rollback: the arm's requests go to control from now on (its weight in config is unchanged). */
  cutArm(experiment: string, arm: string, reason: string): void {
    const e = this.byName.get(experiment);
    if (e === undefined || !e.byName.has(arm)) {
      this.opts.logger?.warn({ experiment, arm, reason }, 'cannot cut an arm that is not in the config');
      return;
    }
    if (arm === e.settings.control) {
      this.opts.logger?.warn({ experiment, arm, reason }, 'the control arm cannot be cut');
      return;
    }
    if (e.cuts.has(arm)) return;
    e.cuts.set(arm, { reason, at: new Date() });
    this.opts.logger?.warn({ experiment, arm, reason, control: e.settings.control }, 'experiment arm cut: its traffic goes to control');
  }

  /** Cuts of the previous runtime's splitter stay where the arm's configured weight did not change (a new weight reinstates it). */
  inheritFrom(previous: StickySplitter): void {
    for (const [name, e] of this.byName) {
      const old = previous.byName.get(name);
      if (old === undefined) continue;
      for (const [arm, cut] of old.cuts) {
        const i = e.byName.get(arm);
        const j = old.byName.get(arm);
        if (i === undefined || j === undefined || e.arms[i]!.weight !== old.arms[j]!.weight || arm === e.settings.control) continue;
        e.cuts.set(arm, cut);
      }
    }
  }

  /** Every leaf of every arm (for the health checks). */
  *leaves(): IterableIterator<LeafNode> {
    for (const e of this.byName.values()) for (const arm of e.arms) yield* arm.leaves;
  }

  status(): ExperimentStatus[] {
    return [...this.byName.values()].map((e) => {
      const s = e.settings;
      const total = e.arms.reduce((sum, a) => sum + a.weight, 0);
      const moved = s.state !== 'running' ? total : e.arms.reduce((sum, a) => sum + (e.cuts.has(a.name) ? a.weight : 0), 0);
      return {
        name: s.name,
        model: s.model,
        state: s.state,
        control: s.control,
        key_header: s.key.header,
        salt: s.salt,
        override_header: s.overrideHeader ?? null,
        arms: e.arms.map((a) => {
          const cut = e.cuts.get(a.name);
          const isControl = a.name === s.control;
          const effective = isControl
            ? (s.state !== 'running' ? total : a.weight + moved)
            : s.state !== 'running' || cut !== undefined
              ? 0
              : a.weight;
          return {
            name: a.name,
            weight: a.weight,
            effective_weight: effective,
            cut: cut !== undefined ? { reason: cut.reason, at: cut.at.toISOString() } : null,
          };
        }),
      };
    });
  }

  private effective(e: Running, index: number): ArmAssignment {
    const arm = e.arms[index]!;
    return e.cuts.has(arm.name) ? e.control : arm.assignment;
  }
}

/** What building the splitter needs of a validated config (GatewayConfig fits). */
export interface ExperimentsConfig {
  readonly experiments?: Readonly<Record<string, ExperimentConfig>>;
  readonly targets?: Readonly<Record<string, RouteNodeConfig>>;
  /** The models' serving options (cache, coalescing, batching) apply on their arms too. */
  readonly models?: Readonly<Record<string, { readonly serving?: ModelServingConfig }>>;
}

/**
 * Compiles every experiment of a config (each arm a routing tree of its
 * model, its default leaf ids `experiments.<name>.arms.<arm>...`); undefined
 * when the config has none.
 */
export function buildSplitter(
  config: ExperimentsConfig,
  clusters: ReadonlyMap<string, ResilientBackend>,
  opts: SplitterOptions = {},
): StickySplitter | undefined {
  const entries = Object.entries(config.experiments ?? {});
  if (entries.length === 0) return undefined;
  const compiled = entries.map(([name, e]): CompiledExperiment => {
    const settings = experimentSettings(name, e);
    const arms = Object.entries(e.arms).map(([arm, c]) => {
      const serving = config.models?.[e.model]?.serving;
      const { tree, leaves } = compileTree(armNode(c), `experiments.${name}.arms.${arm}`, e.model, config.targets ?? {}, clusters, serving, opts.observers);
      return { name: arm, node: tree, leaves };
    });
    return { settings, arms };
  });
  return new StickySplitter(compiled, opts);
}
