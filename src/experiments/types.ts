/**
 * The contracts between the parts of A/B experiments and shadow traffic: the
 * validated settings (from config), and what the request path reports to the
 * results. Kept apart so assignment, results and shadowing can each be read
 * on their own.
 */

/** How a request finds its sticky key: a header (REST) or metadata key (gRPC), lower-case. */
export interface StickyKeySettings {
  readonly header: string;
}

export type ExperimentState = 'running' | 'paused' | 'ended';

/** An automatic rollback: an arm over either threshold, once it has `minRequests`, gets weight 0. */
export interface GuardSettings {
  /** Errors / requests over the window, 0..1. */
  readonly maxErrorRate?: number;
  readonly maxP99Ms?: number;
  readonly minRequests: number;
  readonly windowMs: number;
}

export interface ExperimentSettings {
  readonly name: string;
  /** The public model whose requests the experiment splits. */
  readonly model: string;
  readonly key: StickyKeySettings;
  /** Mixed into the hash so two experiments split the same keys independently; default: the name. */
  readonly salt: string;
  readonly state: ExperimentState;
  /** The arm that paused / ended experiments and guarded-off arms send traffic to. */
  readonly control: string;
  /** Arms in config order (the order fixes the hash ranges, so changing weights moves few keys). */
  readonly arms: readonly { readonly name: string; readonly weight: number }[];
  /** Header a tester sets to force an arm; undefined when overrides are disabled. */
  readonly overrideHeader?: string;
  readonly guard?: GuardSettings;
}

/** Mirroring of a model's requests to another target; the copy never affects the client. */
export interface ShadowSettings {
  /** The public model whose requests are mirrored. */
  readonly model: string;
  /** 0..100: share of requests copied. */
  readonly percent: number;
  /** Copies in flight at most; beyond it a copy is dropped (and counted). */
  readonly maxConcurrency: number;
  /** Floating-point outputs agree when |a - b| <= tolerance (absolute); 0 means bit-exact. */
  readonly tolerance: number;
}

/** One finished request of an experiment arm. */
export interface ArmObservation {
  readonly ok: boolean;
  readonly latencyMs: number;
  readonly cacheHit?: boolean;
  /** The request's id (x-request-id), so a client can later report an outcome for it. */
  readonly requestId?: string;
}

/** Where the request path reports experiment traffic (the results module implements it). */
export interface ExperimentRecorder {
  recordRequest(experiment: string, arm: string, observation: ArmObservation): void;
}

/**
 * Turning an arm off while its experiment runs (the guard's automatic
 * rollback): the arm's effective weight becomes 0 and its keys go to the
 * control arm, until the arm's weight is changed in config (or the experiment
 * is removed). The assignment module implements it; the results' guard calls it.
 */
export interface ArmControl {
  cutArm(experiment: string, arm: string, reason: string): void;
}
