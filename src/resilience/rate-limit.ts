import { Redis, ReplyError } from 'ioredis';
import type { Logger } from '../observability/logger.js';
import { fastFailRedisOptions } from '../core/redis-options.js';

/** A token bucket's size: `rps` tokens a second refill it, up to `burst`. */
export interface RateLimit {
  readonly rps: number;
  readonly burst: number;
}

/** One bucket a request takes a token from: its id (what it counts: a key, a model) and its limit now. */
export interface BucketClaim {
  readonly id: string;
  readonly limit: RateLimit;
}

export type RateDecision =
  | { readonly allowed: true }
  /** `bucket`: the id of an empty bucket (the one to wait longest for); `retryAfterMs`: until it holds a token. */
  | { readonly allowed: false; readonly bucket: string; readonly retryAfterMs: number };

const ALLOWED: RateDecision = { allowed: true };

/**
 * Takes one token from every bucket of a request, or from none: a request is
 * allowed only when each of its buckets holds a token, so a refused request
 * costs no bucket anything.
 */
export interface TokenBuckets {
  take(claims: readonly BucketClaim[]): Promise<RateDecision> | RateDecision;
  close(): Promise<void>;
}

interface BucketState {
  tokens: number;
  at: number;
}

/** Buckets kept per instance when no Redis is configured (and while it is down). */
const DEFAULT_MAX_BUCKETS = 100_000;

/**
 * Token buckets in this process: a Map in least-recently-used order, bounded
 * to `maxBuckets` (the oldest is dropped: it comes back full, which only ever
 * lets more through). Limits are read at each take, so a config change applies
 * to existing buckets at once (tokens above a lowered burst are cut).
 */
export class MemoryTokenBuckets implements TokenBuckets {
  private readonly buckets = new Map<string, BucketState>();

  constructor(
    private readonly maxBuckets = DEFAULT_MAX_BUCKETS,
    private readonly now: () => number = Date.now,
  ) {}

  take(claims: readonly BucketClaim[]): RateDecision {
    const now = this.now();
    const states = claims.map((c) => this.refilled(c, now));
    let denied: { bucket: string; retryAfterMs: number } | undefined;
    states.forEach((state, i) => {
      if (state.tokens >= 1) return;
      const claim = claims[i]!;
      const wait = Math.ceil(((1 - state.tokens) * 1000) / claim.limit.rps);
      if (denied === undefined || wait > denied.retryAfterMs) denied = { bucket: claim.id, retryAfterMs: wait };
    });
    if (denied !== undefined) return { allowed: false, ...denied };
    for (const state of states) state.tokens -= 1;
    return ALLOWED;
  }

  get size(): number {
    return this.buckets.size;
  }

  close(): Promise<void> {
    this.buckets.clear();
    return Promise.resolve();
  }

  private refilled(claim: BucketClaim, now: number): BucketState {
    const { rps, burst } = claim.limit;
    let state = this.buckets.get(claim.id);
    if (state === undefined) {
      state = { tokens: burst, at: now };
      if (this.buckets.size >= this.maxBuckets) this.buckets.delete(this.buckets.keys().next().value!);
    } else {
      this.buckets.delete(claim.id);
      if (now > state.at) state.tokens += ((now - state.at) * rps) / 1000;
      state.at = Math.max(state.at, now);
    }
    if (state.tokens > burst) state.tokens = burst;
    // Most recently used last.
    this.buckets.set(claim.id, state);
    return state;
  }
}

/**
 * The same refill and take in Redis, for every bucket of a request at once,
 * atomically: KEYS are the buckets, ARGV their rps and burst in pairs. Time is
 * Redis's own (TIME), so instances with skewed clocks share one view. A bucket
 * is a hash {t: tokens, ts: ms} that expires once it would be full again.
 * Returns {1, 0} when allowed, {0, wait_ms, index of the bucket waited for}.
 */
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local tokens = {}
local wait = 0
local waited = 0
for i = 1, n do
  local rps = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tk = tonumber(state[1])
  local ts = tonumber(state[2])
  if tk == nil or ts == nil then
    tk = burst
  elseif now > ts then
    tk = tk + (now - ts) * rps / 1000
  end
  if tk > burst then tk = burst end
  tokens[i] = tk
  if tk < 1 then
    local w = math.ceil((1 - tk) * 1000 / rps)
    if w > wait then
      wait = w
      waited = i
    end
  end
end
for i = 1, n do
  local rps = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tk = tokens[i]
  if wait == 0 then tk = tk - 1 end
  redis.call('HSET', KEYS[i], 't', tostring(tk), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst * 1000 / rps) + 1000)
end
if wait == 0 then return {1, 0, 0} end
return {0, wait, waited}
`;

export interface RedisTokenBucketsOptions {
  readonly url: string;
  /** Bucket keys are `<keyPrefix>:ratelimit:<bucket id>`. */
  readonly keyPrefix: string;
  /** A check waits at most this for Redis; then the local buckets decide. */
  readonly commandTimeoutMs: number;
  readonly logger: Logger;
  /** Used while Redis is unreachable or slow (default: a new MemoryTokenBuckets). */
  readonly fallback?: MemoryTokenBuckets;
}

type RedisWithTake = Redis & { infergateTakeTokens(...args: (string | number)[]): Promise<[number, number, number]> };

/**
 * Token buckets shared by every instance through Redis: one script call
 * (EVALSHA, defined once) per request refills and takes from its buckets in
 * one round trip. Redis down or slow (each call is bounded by
 * commandTimeoutMs, never queued while disconnected): the instance's own
 * buckets decide, so requests are limited per instance rather than refused or
 * let through unchecked. The outage is logged once, and its end.
 */
export class RedisTokenBuckets implements TokenBuckets {
  private readonly client: RedisWithTake;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly fallback: MemoryTokenBuckets;
  /** undefined until the first connect or failure. */
  private up: boolean | undefined;
  private closed = false;

  constructor(opts: RedisTokenBucketsOptions) {
    this.prefix = `${opts.keyPrefix}:ratelimit:`;
    this.logger = opts.logger;
    this.fallback = opts.fallback ?? new MemoryTokenBuckets();
    const client = new Redis(opts.url, fastFailRedisOptions(opts.commandTimeoutMs, 'infergate-ratelimit'));
    client.defineCommand('infergateTakeTokens', { lua: TAKE_SCRIPT });
    this.client = client as RedisWithTake;
    this.client.on('ready', () => this.setUp(true));
    this.client.on('error', (err: Error) => {
      this.logger.debug({ err: err.message }, 'rate limit redis error');
      this.setUp(false, err.message);
    });
    this.client.on('close', () => this.setUp(false, 'connection closed'));
    this.client.connect().catch(() => undefined);
  }

  async take(claims: readonly BucketClaim[]): Promise<RateDecision> {
    if (claims.length === 0) return ALLOWED;
    // Not connected (yet, or any more): the local buckets decide at once; the connection's events log the outage.
    if (this.closed || this.client.status !== 'ready') return this.fallback.take(claims);
    const args: (string | number)[] = [claims.length, ...claims.map((c) => this.prefix + c.id)];
    for (const c of claims) args.push(c.limit.rps, c.limit.burst);
    try {
      const [allowed, wait, index] = await this.client.infergateTakeTokens(...args);
      if (this.up !== true && this.client.status === 'ready') this.setUp(true);
      if (allowed === 1) return ALLOWED;
      return { allowed: false, bucket: claims[Math.max(0, index - 1)]!.id, retryAfterMs: wait };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.logger.debug({ err: message }, 'rate limit redis check failed');
      // A timeout is a slow Redis, a reply error a refused script: neither is the connection failing.
      if (message !== 'Command timed out' && !(err instanceof (ReplyError as new () => Error))) this.setUp(false, message);
      return this.fallback.take(claims);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.disconnect();
    await this.fallback.close();
  }

  private setUp(up: boolean, reason?: string): void {
    if (this.closed || this.up === up) return;
    const before = this.up;
    this.up = up;
    if (up) {
      if (before === false) this.logger.info('rate limit redis is back; limits are shared again');
      else this.logger.debug('rate limit redis connected');
    } else {
      this.logger.warn({ reason }, 'rate limit redis unavailable; each instance limits on its own buckets until it returns');
    }
  }
}
