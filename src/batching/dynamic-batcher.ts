/**
 * A dynamic batcher at the gateway, like Triton's: concurrent requests for the same model with compatible
 * inputs wait briefly in a pending batch and go to the backend as ONE call whose inputs are concatenated along
 * dim 0; the answer is split back so that every caller gets exactly its own rows. A backend whose cost is per
 * call (a GPU) then serves many more requests per second.
 */
import { abortedError, GatewayError, toGatewayError, type ErrorCode } from '../core/errors.js';
import type { InferRequest, InferResponse } from '../core/inference.js';
import type { TraceContext } from '../observability/trace-context.js';
import { batchSignature, concatInputs, rowsOf, splitOutputs } from './tensor-batch.js';
import type { CancelSignal } from '../core/cancel.js';

export interface BatchingSettings {
  /** Rows (sum of shape[0]) at which a pending batch is sent at once. */
  readonly maxBatchSize: number;
  /** How long a batch waits for more requests after its first one arrived. */
  readonly maxQueueDelayMs: number;
  /** Requests waiting in all pending batches together; one more is refused with RESOURCE_EXHAUSTED. */
  readonly maxQueueSize: number;
}

export interface BatchStats {
  /** Calls sent for pending batches (a batch of one member included). */
  readonly batches: number;
  /** Requests sent as members of those batches. */
  readonly batchedRequests: number;
  /** Requests that ran alone without queueing: no signature, or more rows than maxBatchSize. */
  readonly unbatched: number;
  /** Requests waiting in pending batches now. */
  readonly queued: number;
  /** Requests refused because the queue was full. */
  readonly rejected: number;
  /** Members run again alone after their merged call failed with an error that may be one member's fault. */
  readonly retriedAlone: number;
  /** Mean rows per batch sent. */
  readonly meanBatchRows: number;
}

export interface BatchCallContext {
  /** Epoch milliseconds. */
  readonly deadline: number;
  readonly signal?: CancelSignal;
  /** The request's trace; a merged call carries its first member's. */
  readonly trace?: TraceContext;
}

/** Hears each batch the batcher sends (the gateway's metrics). */
export interface BatchObserver {
  /** A pending batch went to the backend with `rows` rows (the sum of its members' dim 0). */
  batchSent(rows: number): void;
}

export type BatchCall = (req: InferRequest, ctx: BatchCallContext) => Promise<InferResponse>;

/** Errors that may come from one member's data: the members are retried alone so the others still succeed. */
const MEMBER_SPECIFIC: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
  'OUT_OF_RANGE',
  'INTERNAL',
  'UNKNOWN',
]);

interface Member {
  readonly req: InferRequest;
  readonly ctx: BatchCallContext;
  readonly rows: number;
  readonly resolve: (res: InferResponse) => void;
  readonly reject: (err: unknown) => void;
  /** The abort listener, while one is attached. */
  onAbort?: () => void;
  /** Set once the caller's promise has settled (an abort after sending settles it early). */
  settled: boolean;
}

interface PendingBatch {
  readonly signature: string;
  readonly members: Member[];
  rows: number;
  timer?: NodeJS.Timeout;
}

export class DynamicBatcher {
  /** Only pending (not yet sent) batches, by signature. */
  private readonly pending = new Map<string, PendingBatch>();
  private queued = 0;
  private batches = 0;
  private batchedRequests = 0;
  private batchRows = 0;
  private unbatched = 0;
  private rejected = 0;
  private retriedAlone = 0;

  /** `call` runs one (possibly merged) request on the backend; `observer` hears each batch sent. */
  constructor(
    readonly name: string,
    private readonly settings: BatchingSettings,
    private readonly call: BatchCall,
    private readonly observer?: BatchObserver,
  ) {
    const { maxBatchSize, maxQueueDelayMs, maxQueueSize } = settings;
    if (!Number.isSafeInteger(maxBatchSize) || maxBatchSize < 1) {
      throw new RangeError(`batcher '${name}': maxBatchSize must be a positive integer, got ${maxBatchSize}`);
    }
    if (!Number.isFinite(maxQueueDelayMs) || maxQueueDelayMs < 0) {
      throw new RangeError(`batcher '${name}': maxQueueDelayMs must be a non-negative number, got ${maxQueueDelayMs}`);
    }
    if (!Number.isSafeInteger(maxQueueSize) || maxQueueSize < 0) {
      throw new RangeError(`batcher '${name}': maxQueueSize must be a non-negative integer, got ${maxQueueSize}`);
    }
  }

  /**
   * Joins a pending batch of requests with the same signature, or starts one. A batch is sent when its rows
   * reach maxBatchSize, or maxQueueDelayMs after its first request arrived. A request with more rows than
   * maxBatchSize, or no signature, runs alone at once. A member whose signal aborts, or whose deadline has passed
   * when the batch is sent, leaves the batch and is not sent.
   */
  submit(req: InferRequest, ctx: BatchCallContext): Promise<InferResponse> {
    const signature = batchSignature(req);
    const rows = rowsOf(req);
    if (signature === undefined || rows > this.settings.maxBatchSize) {
      this.unbatched++;
      return this.callAlone(req, ctx);
    }
    if (ctx.signal?.aborted) return Promise.reject(abortError(ctx.signal));
    if (ctx.deadline <= Date.now()) return Promise.reject(deadlineError());
    if (this.queued >= this.settings.maxQueueSize) {
      this.rejected++;
      return Promise.reject(
        new GatewayError('RESOURCE_EXHAUSTED', `batcher '${this.name}': ${this.queued} requests already wait to be batched`, {
          retryAfterMs: 1000,
        }),
      );
    }

    return new Promise<InferResponse>((resolve, reject) => {
      const member: Member = { req, ctx, rows, resolve, reject, settled: false };
      let batch = this.pending.get(signature);
      if (batch !== undefined && batch.rows + rows > this.settings.maxBatchSize) {
        this.dispatch(batch); // it cannot take this request: send it as it is, and start another
        batch = undefined;
      }
      if (batch === undefined) {
        const created: PendingBatch = { signature, members: [], rows: 0 };
        created.timer = setTimeout(() => this.dispatch(created), this.settings.maxQueueDelayMs);
        created.timer.unref();
        this.pending.set(signature, created);
        batch = created;
      }
      batch.members.push(member);
      batch.rows += rows;
      this.queued++;

      const signal = ctx.signal;
      if (signal !== undefined) {
        const joined = batch;
        member.onAbort = () => this.leave(joined, member);
        signal.addEventListener('abort', member.onAbort, { once: true });
      }
      if (batch.rows >= this.settings.maxBatchSize) this.dispatch(batch);
    });
  }

  stats(): BatchStats {
    return {
      batches: this.batches,
      batchedRequests: this.batchedRequests,
      unbatched: this.unbatched,
      queued: this.queued,
      rejected: this.rejected,
      retriedAlone: this.retriedAlone,
      meanBatchRows: this.batches === 0 ? 0 : this.batchRows / this.batches,
    };
  }

  /** Sends pending batches now (shutdown). */
  flush(): void {
    for (const batch of [...this.pending.values()]) this.dispatch(batch);
  }

  private callAlone(req: InferRequest, ctx: BatchCallContext): Promise<InferResponse> {
    try {
      return this.call(req, ctx);
    } catch (err) {
      return Promise.reject(err); // a call that throws synchronously still answers through the promise
    }
  }

  /** A member's signal aborted: before sending it leaves its batch; after, its caller is answered at once. */
  private leave(batch: PendingBatch, member: Member): void {
    const signal = member.ctx.signal;
    member.onAbort = undefined;
    const i = batch.members.indexOf(member);
    if (i >= 0 && this.pending.get(batch.signature) === batch) {
      batch.members.splice(i, 1);
      batch.rows -= member.rows;
      this.queued--;
      if (batch.members.length === 0) this.discard(batch);
    }
    if (signal !== undefined) settle(member, () => member.reject(abortError(signal)));
  }

  private discard(batch: PendingBatch): void {
    if (batch.timer !== undefined) clearTimeout(batch.timer);
    batch.timer = undefined;
    if (this.pending.get(batch.signature) === batch) this.pending.delete(batch.signature);
  }

  private dispatch(batch: PendingBatch): void {
    if (this.pending.get(batch.signature) !== batch) return; // already sent or emptied
    this.discard(batch);
    this.queued -= batch.members.length;

    const now = Date.now();
    const members: Member[] = [];
    for (const m of batch.members) {
      if (m.ctx.deadline <= now) {
        detach(m);
        settle(m, () => m.reject(deadlineError()));
      } else {
        members.push(m);
      }
    }
    if (members.length === 0) return;

    const rows = members.map((m) => m.rows);
    const batchRows = rows.reduce((a, b) => a + b, 0);
    this.batches++;
    this.batchedRequests += members.length;
    this.batchRows += batchRows;
    this.observer?.batchSent(batchRows);

    if (members.length === 1) {
      const [only] = members as [Member];
      detach(only);
      void this.runAlone(only);
      return;
    }
    void this.runMerged(members, rows);
  }

  /** A member alone, as a plain call with its own request and context. */
  private async runAlone(m: Member): Promise<void> {
    try {
      const res = await this.callAlone(m.req, m.ctx);
      settle(m, () => m.resolve(res));
    } catch (err) {
      settle(m, () => m.reject(err));
    }
  }

  private async runMerged(members: readonly Member[], rows: readonly number[]): Promise<void> {
    const first = members[0] as Member;

    // The merged call is cancelled only once every member has gone; a member leaving earlier is answered at once
    // (by its abort listener, still attached) while the others wait for the call.
    const controller = new AbortController();
    let remaining = members.length;
    const gone = (): void => {
      if (--remaining === 0) controller.abort(new GatewayError('CANCELLED', 'every request of the batch was cancelled'));
    };
    for (const m of members) {
      const signal = m.ctx.signal;
      if (signal === undefined) continue;
      if (signal.aborted) gone();
      else signal.addEventListener('abort', gone, { once: true });
    }
    const deadline = Math.min(...members.map((m) => m.ctx.deadline));

    let parts: ReturnType<typeof splitOutputs>;
    let res: InferResponse;
    try {
      const merged: InferRequest = {
        model: first.req.model,
        version: first.req.version,
        inputs: concatInputs(members.map((m) => m.req)),
        ...(first.req.parameters !== undefined ? { parameters: first.req.parameters } : {}),
        ...(first.req.outputs !== undefined ? { outputs: first.req.outputs } : {}),
      };
      const trace = first.ctx.trace;
      res = await this.callAlone(merged, { deadline, signal: controller.signal, ...(trace !== undefined ? { trace } : {}) });
      parts = splitOutputs(res.outputs, rows);
    } catch (err) {
      for (const m of members) {
        detach(m);
        m.ctx.signal?.removeEventListener('abort', gone);
      }
      const error = toGatewayError(err);
      if (!MEMBER_SPECIFIC.has(error.code)) {
        for (const m of members) settle(m, () => m.reject(error));
        return;
      }
      // One member's data may have failed the whole call: each runs alone, so only its own caller sees its error.
      const retry = members.filter((m) => !m.settled);
      this.retriedAlone += retry.length;
      await Promise.all(retry.map((m) => this.runAlone(m)));
      return;
    }

    members.forEach((m, i) => {
      detach(m);
      m.ctx.signal?.removeEventListener('abort', gone);
      const answer: InferResponse = {
        model: res.model,
        version: res.version,
        ...(m.req.id !== undefined ? { id: m.req.id } : {}),
        ...(res.parameters !== undefined ? { parameters: res.parameters } : {}),
        outputs: parts[i] ?? [],
      };
      settle(m, () => m.resolve(answer));
    });
  }
}

function detach(m: Member): void {
  if (m.onAbort !== undefined) m.ctx.signal?.removeEventListener('abort', m.onAbort);
  m.onAbort = undefined;
}

function settle(m: Member, fn: () => void): void {
  if (m.settled) return;
  m.settled = true;
  fn();
}

function abortError(signal: CancelSignal): GatewayError {
  return abortedError(signal, 'the request was cancelled');
}

function deadlineError(): GatewayError {
  return new GatewayError('DEADLINE_EXCEEDED', 'the deadline passed while the request waited to be batched');
}
