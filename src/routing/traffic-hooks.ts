import type { InferRequest, InferResponse } from '../core/inference.js';
import type { ArmObservation } from '../experiments/types.js';
import type { RequestContext } from './inference-service.js';
import type { RouteNode } from './route-tree.js';

/**
 * The two places where experiments and shadow traffic meet the request path,
 * as narrow interfaces: the request path knows nothing else of them.
 */

/** The experiment arm a request runs on. */
export interface ArmAssignment {
  readonly experiment: string;
  readonly arm: string;
  /** The arm's compiled routing tree, run instead of the model's own. */
  readonly node: RouteNode;
}

export interface ExperimentSplitter {
  /** The arm a request of public model `model` runs on, or undefined when no running experiment covers it. */
  assign(model: string, ctx: RequestContext): ArmAssignment | undefined;
  /** True when an experiment of this config covers public model `model` (whatever its state). */
  covers(model: string): boolean;
  /** The finished request of an arm, for its results and its guard. Must not throw. */
  record(assignment: ArmAssignment, observation: ArmObservation): void;
}

export interface ShadowMirror {
  /**
   * After the primary answered: copies the request to the model's shadow
   * target when sampled, compares the answers later. Returns at once, never
   * throws, never delays or fails the client's request.
   */
  mirror(model: string, req: InferRequest, primary: InferResponse, primaryLatencyMs: number, ctx: RequestContext): void;
  /** True when this config copies some of public model `model`'s requests. */
  covers(model: string): boolean;
}
