/**
 * Merging requests into one batch and splitting the answer back, for the dynamic batcher.
 *
 * Every canonical tensor is row-major with dim 0 as the batch, so concatenating requests along dim 0 is a
 * concatenation of their raw data (BYTES framing included), and a response's rows are contiguous byte ranges.
 */
import { ELEMENT_SIZE } from '../core/datatypes.js';
import { GatewayError } from '../core/errors.js';
import type { InferRequest } from '../core/inference.js';
import type { Parameters } from '../core/parameters.js';
import { checkTensorData, elementCount, type Tensor } from '../core/tensor.js';

/**
 * Concatenates each named input of several requests along dim 0 (raw Buffers; BYTES framing concatenates as
 * is). The inputs come in the first request's order; callers guarantee compatibility (same batchSignature).
 */
export function concatInputs(requests: readonly InferRequest[]): Tensor[] {
  const [first] = requests;
  if (first === undefined) return [];
  if (requests.length === 1) return [...first.inputs];
  return first.inputs.map((input) => {
    const parts: Buffer[] = [];
    let rows = 0;
    for (const req of requests) {
      const t = req.inputs.find((x) => x.name === input.name);
      if (t === undefined) throw new GatewayError('INTERNAL', `batched request lacks input '${input.name}'`);
      parts.push(t.data);
      rows += t.shape[0] ?? 0;
    }
    const merged: Tensor = {
      name: input.name,
      datatype: input.datatype,
      shape: [rows, ...input.shape.slice(1)],
      data: Buffer.concat(parts),
    };
    return input.parameters === undefined ? merged : { ...merged, parameters: input.parameters };
  });
}

/**
 * Rows (shape[0]) of each output split back into per-request outputs, given each request's row count: result[i]
 * holds request i's outputs, in the order of `outputs`. Throws GatewayError INTERNAL naming the output when an
 * output's shape[0] != sum(rows) or its data does not hold its shape (BYTES: the framing is walked).
 */
export function splitOutputs(outputs: readonly Tensor[], rows: readonly number[]): Tensor[][] {
  const total = rows.reduce((a, b) => a + b, 0);
  const result: Tensor[][] = rows.map(() => []);
  for (const out of outputs) {
    const bad = (why: string): GatewayError =>
      new GatewayError('INTERNAL', `cannot split batched output '${out.name}' into ${rows.length} requests: ${why}`);
    if (out.shape.length === 0) throw bad('it has rank 0, so no batch dimension');
    if (out.shape[0] !== total) throw bad(`its shape[0] is ${out.shape[0]}, the batch has ${total} rows`);
    const size = ELEMENT_SIZE[out.datatype];
    if (size === undefined) throw bad(`unknown datatype ${String(out.datatype)}`);
    const count = elementCount(out.shape);
    const perRow = total === 0 ? 0 : count / total;
    const rest = out.shape.slice(1);
    // Byte offset where each request's rows start, plus the end.
    const bounds: number[] = [0];
    if (size > 0) {
      if (out.data.length !== count * size) {
        throw bad(`shape [${out.shape.join(',')}] of ${out.datatype} needs ${count * size} bytes, got ${out.data.length}`);
      }
      let row = 0;
      for (const r of rows) {
        row += r;
        bounds.push(row * perRow * size);
      }
    } else {
      const starts = bytesElementOffsets(out.data, (why) => bad(why));
      if (starts.length - 1 !== count) throw bad(`shape [${out.shape.join(',')}] needs ${count} BYTES elements, got ${starts.length - 1}`);
      let row = 0;
      for (const r of rows) {
        row += r;
        bounds.push(starts[row * perRow] ?? out.data.length);
      }
    }
    rows.forEach((r, i) => {
      const piece: Tensor = {
        name: out.name,
        datatype: out.datatype,
        shape: [r, ...rest],
        data: out.data.subarray(bounds[i], bounds[i + 1]),
      };
      result[i]?.push(out.parameters === undefined ? piece : { ...piece, parameters: out.parameters });
    });
  }
  return result;
}

/** Start offset of every BYTES element, then the end of the data (so n elements give n + 1 offsets). */
function bytesElementOffsets(data: Buffer, bad: (why: string) => Error): number[] {
  const starts: number[] = [];
  let off = 0;
  while (off < data.length) {
    starts.push(off);
    if (off + 4 > data.length) throw bad(`BYTES element ${starts.length - 1} has a truncated length prefix`);
    off += 4 + data.readUInt32LE(off);
    if (off > data.length) throw bad(`BYTES element ${starts.length - 1} runs past the end of the data`);
  }
  starts.push(off);
  return starts;
}

/**
 * What makes two requests batchable together: model, version, input names + datatypes + shape[1:] (+ input
 * parameters), requested outputs (names + parameters), request parameters; the request id does not count.
 * Undefined when the request cannot be batched at all (no inputs; an input named twice; an input with rank 0;
 * inputs disagreeing on shape[0]; shape[0] < 1; data not matching the shape): such a request runs alone, so the
 * backend judges it and only its caller sees the error.
 */
export function batchSignature(req: InferRequest): string | undefined {
  if (req.inputs.length === 0) return undefined;
  const rows = req.inputs[0]?.shape[0];
  if (rows === undefined || !Number.isSafeInteger(rows) || rows < 1) return undefined;
  const names = new Set<string>();
  const inputs: unknown[] = [];
  for (const t of req.inputs) {
    if (names.has(t.name)) return undefined;
    names.add(t.name);
    if (t.shape.length === 0 || t.shape[0] !== rows) return undefined;
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return undefined;
    if (ELEMENT_SIZE[t.datatype] === undefined) return undefined;
    try {
      checkTensorData(t.datatype, t.shape, t.data, `input '${t.name}'`);
    } catch {
      return undefined;
    }
    inputs.push([t.name, t.datatype, t.shape.slice(1), encodeParameters(t.parameters)]);
  }
  // Sorted by name: requests naming the same inputs in another order still batch (concatInputs goes by name).
  inputs.sort((a, b) => compare((a as [string])[0], (b as [string])[0]));
  const outputs = (req.outputs ?? []).map((o) => [o.name, encodeParameters(o.parameters)]);
  return JSON.stringify([req.model, req.version, inputs, outputs, encodeParameters(req.parameters)]);
}

/** The batch rows a request carries: shape[0] of its inputs (0 without inputs or for a scalar). */
export function rowsOf(req: InferRequest): number {
  return req.inputs[0]?.shape[0] ?? 0;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Parameters in a canonical form: keys sorted, each value tagged with its type (1 and 1n differ). */
function encodeParameters(params: Parameters | undefined): unknown[] {
  if (params === undefined) return [];
  return Object.keys(params)
    .sort(compare)
    .map((k) => {
      const v = params[k];
      return [k, typeof v, String(v)];
    });
}
