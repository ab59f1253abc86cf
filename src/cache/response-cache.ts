import { abortedError, GatewayError } from '../core/errors.js';
import type { InferResponse } from '../core/inference.js';
import type { Logger } from '../observability/logger.js';
import { decodeCachedResponse, encodeCachedResponse } from './codec.js';
import { Singleflight } from './singleflight.js';
import type { CacheStore, CacheStoreStats } from './store.js';
import type { CancelSignal } from '../core/cancel.js';

export interface CachePolicy {
  readonly ttlMs: number;
  readonly maxEntryBytes: number;
}

/** no-cache: skip the lookup, still store; no-store: neither. */
export type CacheMode = 'use' | 'no-cache' | 'no-store';
export type CacheOutcome = 'HIT' | 'MISS';

export interface CacheStats {
  /** Calls answered from the store. */
  readonly hits: number;
  /** Calls answered by a fetch (their own or one they joined). */
  readonly misses: number;
  /** Calls answered by a lookup or fetch another call ran. */
  readonly coalesced: number;
  /** Entries handed to the store. */
  readonly stored: number;
  /** Successes not stored because their encoded size exceeded the policy's maxEntryBytes. */
  readonly tooLarge: number;
  /** Entries the store returned that did not decode (treated as misses, then overwritten). */
  readonly decodeErrors: number;
  /** Keys with a lookup or fetch in flight. */
  readonly inFlight: number;
  readonly store: CacheStoreStats;
}

interface Answer {
  readonly response: InferResponse;
  readonly outcome: CacheOutcome;
}

interface Wait {
  readonly deadline: number;
  readonly signal?: CancelSignal;
}

/** What the fetch in flight for a key will do with a success: stored under `policy` when any participant asked for it. */
interface StoreIntent {
  policy: CachePolicy | undefined;
}

/** setTimeout's longest delay; a deadline beyond it is as good as none. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Inference responses cached in a CacheStore, with concurrent identical
 * requests coalesced into one backend call.
 *
 * Two kinds of flights per key: a lookup flight (callers in mode 'use' with a
 * policy: one store lookup, then on a miss the fetch flight) and a fetch flight
 * (one run of fetch()). Every caller joins whichever is in flight for its key:
 *
 * - 'no-cache' and 'no-store' callers skip the lookup but DO join a fetch in
 *   flight: a concurrent identical call is as fresh as their own would be.
 *   They never join a lookup flight (its answer may come from the store).
 * - A success is stored when any participant of the fetch flight asked for it
 *   (a policy and a mode other than 'no-store'), under the first such policy;
 *   a response coalesced with a 'no-store' call is the same response the
 *   storing participant would have got on its own.
 * - Failures are never stored; everyone waiting on a failed fetch gets its
 *   error, and the next call fetches again.
 * - Each caller (the leader too) waits at most until its own deadline
 *   (DEADLINE_EXCEEDED) or its signal aborting (signal.reason if a
 *   GatewayError, else CANCELLED); the shared fetch goes on for the others and
 *   its success is still stored.
 *
 * The store never fails a call (it answers undefined), and a store write does
 * not delay the response. Responses carry the id of the request that fetched
 * them: callers answer with their own request's id (and public model name).
 */
export class ResponseCache {
  private readonly lookups = new Singleflight<Answer>();
  private readonly fetches = new Singleflight<InferResponse>();
  private readonly intents = new Map<string, StoreIntent>();
  /** Keys with a lookup flight under way. */
  private readonly looking = new Set<string>();
  private readonly writes = new Set<Promise<void>>();
  private hits = 0;
  private misses = 0;
  private coalesced = 0;
  private stored = 0;
  private tooLarge = 0;
  private decodeErrors = 0;

  constructor(
    private readonly store: CacheStore,
    private readonly logger: Logger,
  ) {}

  /**
   * The answer for `key`: from the store (HIT) unless mode says otherwise, else
   * from fetch() (MISS), which runs once among concurrent callers with the same
   * key (also when `policy` is undefined: coalesce only, never stored). See the
   * class comment for how modes, storing, failures and waiting combine.
   */
  async getOrFetch(
    key: string,
    policy: CachePolicy | undefined,
    mode: CacheMode,
    wait: Wait,
    fetch: () => Promise<InferResponse>,
  ): Promise<{ response: InferResponse; outcome: CacheOutcome }> {
    // A call already over is not worth a lookup, let alone starting a fetch nobody waits for.
    checkWait(wait);
    let shared: Promise<Answer>;
    if (policy !== undefined && mode === 'use') {
      const flight = this.lookups.run(key, () => this.lookupThenFetch(key, policy, fetch));
      if (!flight.leader) this.coalesced++;
      shared = flight.promise;
    } else {
      const flight = this.fetchFlight(key, mode === 'no-store' ? undefined : policy, fetch);
      shared = flight.promise.then((response) => ({ response, outcome: 'MISS' as const }));
    }
    const answer = await waitFor(shared, wait);
    if (answer.outcome === 'HIT') this.hits++;
    else this.misses++;
    return { response: answer.response, outcome: answer.outcome };
  }

  stats(): CacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      coalesced: this.coalesced,
      stored: this.stored,
      tooLarge: this.tooLarge,
      decodeErrors: this.decodeErrors,
      inFlight: new Set([...this.intents.keys(), ...this.looking]).size,
      store: this.store.stats(),
    };
  }

  /** Waits for the store writes under way, then closes the store. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.writes]);
    await this.store.close();
  }

  private async lookupThenFetch(key: string, policy: CachePolicy, fetch: () => Promise<InferResponse>): Promise<Answer> {
    this.looking.add(key);
    try {
      return await this.lookupThenFetchOnce(key, policy, fetch);
    } finally {
      this.looking.delete(key);
    }
  }

  private async lookupThenFetchOnce(key: string, policy: CachePolicy, fetch: () => Promise<InferResponse>): Promise<Answer> {
    const entry = await this.store.get(key);
    if (entry !== undefined) {
      try {
        return { response: decodeCachedResponse(entry), outcome: 'HIT' };
      } catch (err) {
        this.decodeErrors++;
        this.logger.warn({ err: (err as Error).message }, 'cache entry does not decode; fetching again');
      }
    }
    const response = await this.fetchFlight(key, policy, fetch).promise;
    return { response, outcome: 'MISS' };
  }

  /** Runs or joins the fetch flight of `key`; `policy` (undefined: do not store) joins the flight's store intent. */
  private fetchFlight(key: string, policy: CachePolicy | undefined, fetch: () => Promise<InferResponse>): { promise: Promise<InferResponse> } {
    const flight = this.fetches.run(key, () => this.runFetch(key, policy, fetch));
    if (!flight.leader) {
      this.coalesced++;
      const intent = this.intents.get(key);
      if (intent !== undefined && intent.policy === undefined) intent.policy = policy;
    }
    return flight;
  }

  private async runFetch(key: string, policy: CachePolicy | undefined, fetch: () => Promise<InferResponse>): Promise<InferResponse> {
    const intent: StoreIntent = { policy };
    this.intents.set(key, intent);
    let response: InferResponse;
    try {
      response = await fetch();
    } finally {
      if (this.intents.get(key) === intent) this.intents.delete(key);
    }
    if (intent.policy !== undefined) this.storeResponse(key, response, intent.policy);
    return response;
  }

  private storeResponse(key: string, response: InferResponse, policy: CachePolicy): void {
    if (!(policy.ttlMs > 0)) return;
    let entry: Buffer;
    try {
      entry = encodeCachedResponse(response);
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'response not cacheable; not stored');
      return;
    }
    if (entry.length > policy.maxEntryBytes) {
      this.tooLarge++;
      return;
    }
    this.stored++;
    const write = this.store.set(key, entry, policy.ttlMs).catch(() => undefined);
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }
}

/** `shared` as seen by one caller: given up at its deadline or when its signal aborts. */
function waitFor<T>(shared: Promise<T>, wait: Wait): Promise<T> {
  const { deadline, signal } = wait;
  return new Promise<T>((resolve, reject) => {
    try {
      checkWait(wait);
    } catch (err) {
      return reject(err);
    }
    const ms = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    const cleanup = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const onAbort = (): void => {
      cleanup();
      reject(abortError(signal!));
    };
    if (ms <= MAX_TIMER_MS) {
      timer = setTimeout(() => {
        cleanup();
        reject(deadlineError());
      }, ms);
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    shared.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (err: unknown) => {
        cleanup();
        reject(err);
      },
    );
  });
}

function checkWait(wait: Wait): void {
  if (wait.signal?.aborted === true) throw abortError(wait.signal);
  if (wait.deadline <= Date.now()) throw deadlineError();
}

function deadlineError(): GatewayError {
  return new GatewayError('DEADLINE_EXCEEDED', 'deadline exceeded while waiting for the response');
}

function abortError(signal: CancelSignal): GatewayError {
  return abortedError(signal, 'cancelled while waiting for the response');
}
