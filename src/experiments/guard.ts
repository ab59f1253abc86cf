import type { Logger } from '../observability/logger.js';
import type { ExperimentResults } from './results.js';
import type { ArmControl, ExperimentSettings } from './types.js';

export interface ExperimentGuardOptions {
  readonly results: ExperimentResults;
  readonly control: ArmControl;
  /** The running config's experiments (read on every check, so config swaps apply). */
  readonly experiments: () => readonly ExperimentSettings[];
  readonly logger?: Logger;
  /** How often every guarded experiment is checked (default 1000 ms). */
  readonly intervalMs?: number;
}

/** A cut the guard made. */
export interface GuardCut {
  readonly experiment: string;
  readonly arm: string;
  readonly reason: string;
}

/**
 * The automatic rollback: every `intervalMs`, each running experiment with a
 * guard has its arms read over the guard's window (this instance's traffic);
 * an arm other than the control with at least `minRequests` requests and an
 * error rate above `maxErrorRate` or a p99 above `maxP99Ms` is cut through
 * ArmControl (weight 0, its traffic to the control), once, and logged at warn.
 * An arm cut once is not cut again until its configured weight changes (a new
 * config re-enables it); its window is cleared at the cut so it then starts clean.
 */
export class ExperimentGuard {
  private timer: NodeJS.Timeout | undefined;
  /** `experiment \0 arm` -> the arm's configured weight when cut. */
  private readonly cut = new Map<string, number>();

  constructor(private readonly opts: ExperimentGuardOptions) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.check(), this.opts.intervalMs ?? 1_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass over every guarded experiment; returns the cuts it made. */
  check(): GuardCut[] {
    const made: GuardCut[] = [];
    const { results } = this.opts;
    const seen = new Set<string>();
    for (const exp of this.opts.experiments()) {
      const guard = exp.guard;
      if (guard === undefined || exp.state !== 'running') continue;
      results.setWindow(exp.name, guard.windowMs);
      for (const arm of exp.arms) {
        if (arm.name === exp.control) continue;
        const id = `${exp.name}\u0000${arm.name}`;
        seen.add(id);
        const cutAt = this.cut.get(id);
        if (cutAt !== undefined) {
          if (cutAt === arm.weight) continue;
          // Its weight was changed in config: the arm is back, and guarded again.
          this.cut.delete(id);
          results.clearCut(exp.name, arm.name);
        }
        if (arm.weight === 0) continue;
        const stats = results.windowStats(exp.name, arm.name, guard.windowMs);
        if (stats.requests < guard.minRequests) continue;
        let reason: string | undefined;
        if (guard.maxErrorRate !== undefined && stats.errorRate > guard.maxErrorRate) {
          reason = `error rate ${round(stats.errorRate * 100)}% > ${round(guard.maxErrorRate * 100)}% over ${stats.requests} requests in ${guard.windowMs / 1_000} s`;
        } else if (guard.maxP99Ms !== undefined && stats.p99Ms !== undefined && stats.p99Ms > guard.maxP99Ms) {
          reason = `p99 latency ~${round(stats.p99Ms)} ms > ${guard.maxP99Ms} ms over ${stats.requests} requests in ${guard.windowMs / 1_000} s`;
        }
        if (reason === undefined) continue;
        this.cut.set(id, arm.weight);
        results.noteCut(exp.name, arm.name, reason);
        results.resetWindow(exp.name, arm.name);
        this.opts.logger?.warn(
          { experiment: exp.name, arm: arm.name, control: exp.control, reason },
          'experiment guard: arm cut, its traffic goes to the control arm',
        );
        try {
          this.opts.control.cutArm(exp.name, arm.name, reason);
        } catch (err) {
          this.opts.logger?.error({ experiment: exp.name, arm: arm.name, err: (err as Error).message }, 'experiment guard: cutting the arm failed');
        }
        made.push({ experiment: exp.name, arm: arm.name, reason });
      }
    }
    // Experiments or arms gone from config: forget their cuts.
    for (const id of this.cut.keys()) if (!seen.has(id)) this.cut.delete(id);
    return made;
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
