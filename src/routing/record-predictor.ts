import { abortedError, GatewayError, invalidArgument, toGatewayError } from '../core/errors.js';
import type { InferRequest, TensorMetadata } from '../core/inference.js';
import type { Tensor } from '../core/tensor.js';
import { batchSignature, concatInputs, splitOutputs } from '../batching/tensor-batch.js';
import { predictInputs } from '../protocols/tfserving/rest-codec.js';
import { tensorJson, tensorRowsJson } from '../protocols/tfserving/rest-json.js';
import { startTrace } from '../observability/trace-context.js';
import type { InferenceService, RequestContext } from './inference-service.js';
import type { RouteTarget } from './model-router.js';

/**
 * One record: input name -> value, as in TF Serving's row format ("instances"):
 * a number, a string, a boolean, or nested lists of them for a tensor. A file
 * row (JSONL object, CSV row, Parquet row) and a stream event's payload are
 * records.
 */
export type InputRecord = Readonly<Record<string, unknown>>;

/** What became of one record: its outputs (name -> JSON text of this record's value), or why it failed. */
export type RecordOutcome =
  | { readonly ok: true; readonly outputs: Readonly<Record<string, string>> }
  | { readonly ok: false; readonly error: GatewayError };

export interface PredictOptions {
  /** Aborts the calls in flight (a cancelled job, a stopping processor). */
  readonly signal?: AbortSignal;
  /** A request id prefix for the backend calls (a job or stream id), for correlation in logs. */
  readonly requestId?: string;
}

/**
 * Predictions for records, through the gateway's real-time pipeline (routing,
 * experiments, breakers, retries, cache, batching): what batch jobs and stream
 * processors call. Records that fit together go to the backend as one batched
 * request; a record's own problem (a missing input, a value of the wrong type,
 * a backend refusing it) fails that record only.
 */
export interface RecordPredictor {
  /** One outcome per record, in order. Rejects only when `signal` aborts. */
  predict(records: readonly InputRecord[], opts?: PredictOptions): Promise<RecordOutcome[]>;
}

export interface RecordPredictorOptions {
  readonly model: string;
  /** '' for the server's choice (or the route's pinned version). */
  readonly version: string;
  /** Longest one backend request (a batch of records) may take, retries included. */
  readonly timeoutMs: number;
}

/**
 * A RecordPredictor over the gateway's InferenceService: each record becomes a
 * one-row request typed by the model's input metadata (fields that are not
 * inputs of the model are left out), records with the same shapes are merged
 * along dim 0 into one request, and the answer is split back per record.
 * When a merged request is refused as invalid, its records are retried one by
 * one, so one bad record fails alone.
 */
export function createRecordPredictor(service: InferenceService, opts: RecordPredictorOptions): RecordPredictor {
  let calls = 0;
  const context = (po: PredictOptions | undefined): RequestContext => ({
    deadline: Date.now() + opts.timeoutMs,
    requestId: `${po?.requestId ?? 'records'}-${++calls}`,
    // Each request of records starts a trace of its own: its backend calls carry a traceparent like any other.
    trace: startTrace(),
    ...(po?.signal !== undefined ? { signal: po.signal } : {}),
  });

  const callGroup = async (target: RouteTarget, members: readonly Member[], po: PredictOptions | undefined): Promise<void> => {
    const merged: InferRequest = { model: opts.model, version: opts.version, inputs: concatInputs(members.map((m) => m.request)) };
    try {
      const resp = await service.infer(merged, context(po), target);
      const parts = splitOutputs(resp.outputs, members.map(() => 1));
      members.forEach((m, i) => m.settle({ ok: true, outputs: outputsJson(parts[i]!) }));
    } catch (err) {
      if (po?.signal?.aborted === true) throw abortedError(po.signal, 'the prediction was cancelled');
      const error = toGatewayError(err);
      if (members.length > 1 && RECORD_FAULT_CODES.has(error.code)) {
        // One record may be the bad one: find it by asking for each alone.
        await Promise.all(members.map((m) => callGroup(target, [m], po)));
        return;
      }
      for (const m of members) m.settle({ ok: false, error });
    }
  };

  return {
    async predict(records, po) {
      const outcomes: (RecordOutcome | undefined)[] = new Array(records.length);
      if (records.length === 0) return [];
      let target: RouteTarget;
      let inputs: readonly TensorMetadata[];
      try {
        target = service.resolve(opts.model, opts.version);
        inputs = (await service.cachedModelMetadata(target, context(po))).inputs;
      } catch (err) {
        if (po?.signal?.aborted === true) throw abortedError(po.signal, 'the prediction was cancelled');
        const error = toGatewayError(err);
        return records.map(() => ({ ok: false, error }));
      }
      const groups = new Map<string, Member[]>();
      records.forEach((record, i) => {
        const settle = (o: RecordOutcome): void => {
          outcomes[i] = o;
        };
        let request: InferRequest;
        try {
          request = { model: opts.model, version: opts.version, inputs: recordTensors(record, inputs) };
        } catch (err) {
          settle({ ok: false, error: toGatewayError(err) });
          return;
        }
        // Records whose tensors cannot be merged (no batch dim, odd shapes) go alone.
        const key = batchSignature(request) ?? `alone:${i}`;
        let group = groups.get(key);
        if (group === undefined) groups.set(key, (group = []));
        group.push({ request, settle });
      });
      await Promise.all([...groups.values()].map((members) => callGroup(target, members, po)));
      return outcomes.map((o) => o ?? { ok: false, error: new GatewayError('INTERNAL', 'record was not predicted') });
    },
  };
}

interface Member {
  readonly request: InferRequest;
  readonly settle: (outcome: RecordOutcome) => void;
}

/** Codes with which a merged request may have failed for one record's sake: worth asking again record by record. */
const RECORD_FAULT_CODES: ReadonlySet<string> = new Set(['INVALID_ARGUMENT', 'OUT_OF_RANGE', 'FAILED_PRECONDITION', 'INTERNAL']);

/** A record's input tensors, each with a batch dimension of 1. Fields that are not inputs of the model are left out. */
function recordTensors(record: InputRecord, inputs: readonly TensorMetadata[]): Tensor[] {
  const row: Record<string, unknown> = {};
  const missing: string[] = [];
  for (const input of inputs) {
    const value = record[input.name];
    if (value === undefined) missing.push(input.name);
    else row[input.name] = value;
  }
  if (missing.length > 0) {
    throw invalidArgument(
      `the record lacks input${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} of the model (its fields: ${Object.keys(record).join(', ') || 'none'})`,
    );
  }
  return predictInputs({ format: 'row', payload: [row] }, inputs);
}

/** Output name -> JSON text of the record's value (the batch dimension of 1 dropped). */
function outputsJson(outputs: readonly Tensor[]): Record<string, string> {
  const json: Record<string, string> = {};
  for (const t of outputs) json[t.name] = t.shape.length === 0 ? tensorJson(t, false) : tensorRowsJson(t, false)[0] ?? 'null';
  return json;
}
