import type { ExperimentConfig } from '../config/experiment-schema.js';
import type { FallbackOn, MatchCondition, ModelNodeConfig, RouteNodeConfig } from '../config/route-schema.js';

/**
 * The running config's routing trees as plain JSON, for people (GET
 * /admin/routes, the status page): every node as written, named targets
 * resolved in place (with their name kept), zero-weight children included, and
 * each leaf with the id it answers with (x-infergate-target), computed by the
 * same rule as route-tree.ts: its `id`, else its config path.
 */

export type RouteView = LeafView | TargetView | WeightedView | FallbackView | MatchView;

interface Settings {
  /** The node's own timeout_ms, when it sets one. */
  readonly timeout_ms?: number;
}

export interface LeafView extends Settings {
  readonly kind: 'leaf';
  readonly id: string;
  readonly backend: string;
  /** The backend's model name (the public name when the config names none). */
  readonly model: string;
  /** The pinned version; null lets the client's version through. */
  readonly version: string | null;
}

export interface TargetView extends Settings {
  readonly kind: 'target';
  readonly target: string;
  readonly node: RouteView;
}

export interface WeightedView extends Settings {
  readonly kind: 'weighted';
  /** share: the child's fraction of this node's traffic (weight / sum of weights), 0..1. */
  readonly children: readonly { readonly weight: number; readonly share: number; readonly node: RouteView }[];
}

export interface FallbackView extends Settings {
  readonly kind: 'fallback';
  readonly fallback_on: readonly FallbackOn[];
  readonly children: readonly RouteView[];
}

export interface MatchView extends Settings {
  readonly kind: 'match';
  readonly rules: readonly { readonly when: readonly MatchCondition[]; readonly node: RouteView }[];
  readonly default: RouteView;
}

export interface ModelRouteView {
  readonly name: string;
  /** The experiment splitting this model's traffic (its arms replace the tree while it exists); null when none. */
  readonly experiment: string | null;
  readonly tree: RouteView;
  readonly shadow: { readonly percent: number; readonly node: RouteView } | null;
}

export interface ExperimentRouteView {
  readonly name: string;
  readonly model: string;
  readonly arms: readonly { readonly name: string; readonly weight: number; readonly node: RouteView }[];
}

export interface RoutesView {
  readonly models: readonly ModelRouteView[];
  readonly experiments: readonly ExperimentRouteView[];
}

/** What the view reads of a validated config (GatewayConfig fits). */
export interface RouteViewConfig {
  readonly models: Readonly<Record<string, ModelNodeConfig>>;
  readonly targets?: Readonly<Record<string, RouteNodeConfig>>;
  readonly experiments?: Readonly<Record<string, ExperimentConfig>>;
}

export function routesView(config: RouteViewConfig): RoutesView {
  const targets = config.targets ?? {};
  const experiments = Object.entries(config.experiments ?? {});
  const experimentOf = new Map(experiments.map(([name, e]) => [e.model, name]));
  return {
    models: Object.entries(config.models).map(([name, node]) => ({
      name,
      experiment: experimentOf.get(name) ?? null,
      tree: nodeView(node, `models.${name}`, name, targets, []),
      // The shadow compiles as a tree of its own under the model's name (see experiments/shadow.ts).
      shadow: node.shadow !== undefined ? { percent: node.shadow.percent, node: nodeView(node.shadow.node, `models.${name}`, name, targets, []) } : null,
    })),
    experiments: experiments.map(([name, e]) => ({
      name,
      model: e.model,
      arms: Object.entries(e.arms).map(([arm, { weight, ...node }]) => ({
        name: arm,
        weight,
        node: nodeView(node as RouteNodeConfig, `experiments.${name}.arms.${arm}`, e.model, targets, []),
      })),
    })),
  };
}

function nodeView(
  config: RouteNodeConfig,
  path: string,
  modelName: string,
  targets: Readonly<Record<string, RouteNodeConfig>>,
  via: readonly string[],
): RouteView {
  const settings: Settings = config.timeout_ms !== undefined ? { timeout_ms: config.timeout_ms } : {};
  if ('backend' in config) {
    return { kind: 'leaf', id: config.id ?? path, backend: config.backend, model: config.model ?? modelName, version: config.version ?? null, ...settings };
  }
  if ('target' in config) {
    const target = targets[config.target];
    // A validated config has neither; a view never throws.
    if (target === undefined || via.includes(config.target)) {
      return { kind: 'leaf', id: `targets.${config.target}`, backend: '?', model: modelName, version: null, ...settings };
    }
    return { kind: 'target', target: config.target, node: nodeView(target, `targets.${config.target}`, modelName, targets, [...via, config.target]), ...settings };
  }
  if ('weighted' in config) {
    const total = config.weighted.reduce((sum, c) => sum + c.weight, 0);
    return {
      kind: 'weighted',
      children: config.weighted.map((c, i) => ({
        weight: c.weight,
        share: total > 0 ? c.weight / total : 0,
        node: nodeView(c, `${path}.weighted.${i}`, modelName, targets, via),
      })),
      ...settings,
    };
  }
  if ('fallback' in config) {
    return {
      kind: 'fallback',
      fallback_on: config.fallback_on,
      children: config.fallback.map((c, i) => nodeView(c, `${path}.fallback.${i}`, modelName, targets, via)),
      ...settings,
    };
  }
  return {
    kind: 'match',
    rules: config.match.map((rule, i) => ({ when: rule.when, node: nodeView(rule, `${path}.match.${i}`, modelName, targets, via) })),
    default: nodeView(config.default, `${path}.default`, modelName, targets, via),
    ...settings,
  };
}
