import { abortedError, GatewayError } from '../../src/core/errors.js';
import type { InputRecord, PredictOptions, RecordOutcome, RecordPredictor } from '../../src/routing/record-predictor.js';

/**
 * A RecordPredictor for the stream tests: each field's numbers doubled
 * (nested lists too). A record with field `poison` fails INVALID_ARGUMENT (no
 * retry helps), one with `flaky` fails UNAVAILABLE every time. It counts the
 * records in its calls at once, and can hold calls until released.
 */
export class DoublingPredictor implements RecordPredictor {
  calls = 0;
  records = 0;
  concurrentRecords = 0;
  maxConcurrentRecords = 0;
  /** Every record fails UNAVAILABLE while set (a backend outage). */
  down = false;
  /** While closed, calls wait in predict() (aborting with the signal unless ignoreAbort). */
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  constructor(private readonly opts: { ignoreAbort?: boolean } = {}) {}

  /** Calls from now on wait until release(). */
  hold(): void {
    if (this.gate) return;
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.gate = { promise, open };
  }

  release(): void {
    this.gate?.open();
    this.gate = undefined;
  }

  async predict(records: readonly InputRecord[], opts?: PredictOptions): Promise<RecordOutcome[]> {
    this.calls++;
    this.records += records.length;
    this.concurrentRecords += records.length;
    this.maxConcurrentRecords = Math.max(this.maxConcurrentRecords, this.concurrentRecords);
    try {
      if (this.gate) await this.wait(this.gate.promise, this.opts.ignoreAbort === true ? undefined : opts?.signal);
      if (this.down) return records.map(() => ({ ok: false, error: new GatewayError('UNAVAILABLE', 'backend down') }));
      return records.map(predictOne);
    } finally {
      this.concurrentRecords -= records.length;
    }
  }

  private wait(gate: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (signal === undefined) return gate;
    if (signal.aborted) return Promise.reject(abortedError(signal, 'cancelled'));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => reject(abortedError(signal, 'cancelled'));
      signal.addEventListener('abort', onAbort, { once: true });
      void gate.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }
}

function predictOne(record: InputRecord): RecordOutcome {
  if ('poison' in record) return { ok: false, error: new GatewayError('INVALID_ARGUMENT', 'poisoned record') };
  if ('flaky' in record) return { ok: false, error: new GatewayError('UNAVAILABLE', 'backend unavailable (flaky record)') };
  const outputs: Record<string, string> = {};
  for (const [name, value] of Object.entries(record)) outputs[name] = JSON.stringify(double(value));
  return { ok: true, outputs };
}

function double(value: unknown): unknown {
  if (typeof value === 'number') return value * 2;
  if (Array.isArray(value)) return value.map(double);
  return value;
}
