/** Types of traffic-series.js (a plain ES module the status page loads as it is). */
import type { Exposition } from './prometheus-text.js';

export const REQUESTS: 'infergate_requests_total';
export const DURATION: 'infergate_request_duration_seconds';

export interface TrafficPoint {
  readonly t: number;
  /** Requests and failed requests per second. */
  readonly rps: number;
  readonly eps: number;
  /** Latency quantiles in seconds; null when no request finished between the scrapes. */
  readonly p50: number | null;
  readonly p99: number | null;
}
export interface TrafficWindow {
  readonly model: string;
  readonly arm: string | null;
  readonly rps: number;
  readonly eps: number;
  readonly p50: number | null;
  readonly p99: number | null;
}
export function isErrorCode(code: string): boolean;
export function trafficBetween(
  previous: Pick<Exposition, 'samples'>,
  current: Pick<Exposition, 'samples'>,
  seconds: number,
  isError?: (code: string) => boolean,
): Map<string, TrafficWindow>;
export class TrafficHistory {
  constructor(options?: { windowMs?: number; maxGapMs?: number; isError?: (code: string) => boolean });
  readonly windowMs: number;
  readonly maxGapMs: number;
  readonly series: Map<string, { readonly model: string; readonly arm: string | null; readonly points: TrafficPoint[] }>;
  add(at: number, scrape: Pick<Exposition, 'samples'>): Map<string, TrafficPoint>;
  restart(): void;
  prune(now: number): void;
}
