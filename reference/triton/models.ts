// The reference server's model repository: deterministic models over raw little-endian tensors, and the
// request validation Triton's core performs before a model runs. Both front ends (rest.ts, grpc.ts) decode
// into a protocol-free InferRequest and call infer(); nothing here knows about HTTP or gRPC.
import { Buffer } from 'node:buffer';
import {
  DATATYPES, ELEMENT_BYTES, decodeElements, elementCount, encodeElements, formatShape, splitBytes,
  type Datatype, type Tensor,
} from './tensor.js';

export const SERVER_METADATA = {
  name: 'triton',
  version: '2.50.0-reference',
  extensions: ['classification', 'model_repository', 'binary_tensor_data'],
} as const;

/** Triton's error kinds that this server can produce; each front end maps them to its status codes. */
export type ErrorCode = 'INVALID_ARG' | 'NOT_FOUND' | 'UNAVAILABLE' | 'UNSUPPORTED' | 'INTERNAL';

export class TritonError extends Error {
  override readonly name = 'TritonError';
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }
}

const invalidArg = (message: string): TritonError => new TritonError('INVALID_ARG', message);

export interface TensorSpec {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  /** An input the request may leave out (Triton's `optional: true`); not part of the metadata. */
  readonly optional?: boolean;
}

export interface Model {
  readonly name: string;
  readonly platform: string;
  /** Ascending; the last one is what an unversioned request gets. */
  readonly versions: readonly string[];
  readonly ready: boolean;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /**
   * Triton's decoupled transaction policy (`model_transaction_policy { decoupled: true }`): the model answers a
   * request with `respond` (any number of responses) and only ModelStreamInfer can call it.
   */
  readonly decoupled?: boolean;
  /** Called only with inputs already validated against `inputs`; returns every output, in `outputs` order. */
  run(version: string, inputs: ReadonlyMap<string, Tensor>): Tensor[];
  /** Decoupled models: the responses to one request, in order, each sent `delayMs` after the previous one. */
  respond?(version: string, inputs: ReadonlyMap<string, Tensor>): DecoupledResponse[];
}

export interface DecoupledResponse {
  readonly delayMs: number;
  readonly outputs: Tensor[];
}

export interface RequestedOutput {
  name: string;
  /** Top-k classification (Triton's classification extension); 0 or absent returns the raw tensor. */
  classification?: number;
}

export interface InferRequest {
  modelName: string;
  /** Empty or absent means the latest version. */
  modelVersion?: string;
  inputs: readonly Tensor[];
  /** Empty or absent means every output. */
  outputs?: readonly RequestedOutput[];
}

export interface InferResult {
  modelName: string;
  modelVersion: string;
  outputs: Tensor[];
}

/**
 * Called by a front end as soon as an inference request arrives, before it is decoded, with its REST headers
 * or gRPC metadata (lower-case names, repeated values joined with ", ", binary ones base64); index.ts uses it
 * to count and record calls and add the configured latency.
 */
export type InferHook = (headers: Readonly<Record<string, string>>) => Promise<void>;

// Every model here but repeat_int32 is batched like a Triton model with max_batch_size > 0: dim 0 of each tensor
// is the batch.

function input(inputs: ReadonlyMap<string, Tensor>, name: string): Tensor {
  const t = inputs.get(name);
  if (!t) throw new TritonError('INTERNAL', `model ran without input '${name}'`);
  return t;
}

const LINEAR_W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]] as const;
const LINEAR_BIAS: Readonly<Record<string, readonly number[]>> = { '1': [0.1, -0.2, 0.3], '2': [1, 0, -1] };

/**
 * SCORES = x·W + b in float32. The order is fixed so any client can reproduce the bits:
 * acc = 0; for k in 0..3: acc = f32(acc + f32(x[k] * W[k][j])); then acc = f32(acc + f32(b[j])).
 */
function runLinear(version: string, inputs: ReadonlyMap<string, Tensor>): Tensor[] {
  const x = input(inputs, 'INPUT0');
  const bias = LINEAR_BIAS[version] ?? [];
  const rows = x.shape[0] ?? 0;
  const scores = Buffer.alloc(rows * 3 * 4);
  const classes = Buffer.alloc(rows * 8);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestScore = -Infinity;
    for (let j = 0; j < 3; j++) {
      let acc = 0;
      for (let k = 0; k < 4; k++) {
        acc = Math.fround(acc + Math.fround(x.data.readFloatLE((r * 4 + k) * 4) * (LINEAR_W[k]?.[j] ?? 0)));
      }
      acc = Math.fround(acc + Math.fround(bias[j] ?? 0));
      scores.writeFloatLE(acc, (r * 3 + j) * 4);
      if (acc > bestScore) [best, bestScore] = [j, acc]; // strict '>' so the first maximum wins
    }
    classes.writeBigInt64LE(BigInt(best), r * 8);
  }
  return [
    { name: 'SCORES', datatype: 'FP32', shape: [rows, 3], data: scores },
    { name: 'CLASS', datatype: 'INT64', shape: [rows], data: classes },
  ];
}

function runSimple(_version: string, inputs: ReadonlyMap<string, Tensor>): Tensor[] {
  const a = input(inputs, 'INPUT0');
  const b = input(inputs, 'INPUT1');
  const sum = Buffer.alloc(a.data.length);
  const diff = Buffer.alloc(a.data.length);
  for (let o = 0; o < a.data.length; o += 4) {
    const x = a.data.readInt32LE(o);
    const y = b.data.readInt32LE(o);
    sum.writeInt32LE((x + y) | 0, o); // '| 0' gives int32 wrap-around
    diff.writeInt32LE((x - y) | 0, o);
  }
  return [
    { name: 'OUTPUT0', datatype: 'INT32', shape: [...a.shape], data: sum },
    { name: 'OUTPUT1', datatype: 'INT32', shape: [...a.shape], data: diff },
  ];
}

function identityModel(datatype: Datatype): Model {
  return {
    name: `identity_${datatype.toLowerCase()}`,
    platform: 'reference_identity',
    versions: ['1'],
    ready: true,
    inputs: [{ name: 'INPUT0', datatype, shape: [-1, -1] }],
    outputs: [{ name: 'OUTPUT0', datatype, shape: [-1, -1] }],
    run: (_v, inputs) => {
      const x = input(inputs, 'INPUT0');
      return [{ name: 'OUTPUT0', datatype, shape: [...x.shape], data: x.data }];
    },
  };
}

/**
 * Triton's repeat example (python_backend/examples/decoupled), decoupled and not batched (max_batch_size 0):
 * one response per element of IN, each with OUT (that element) and IDX (its index), sent DELAY[i] ms after the
 * previous one (DELAY is optional, as the example's WAIT is left out); the final flag comes on its own after the
 * last response, so a request with an empty IN gets no response at all, only the final flag.
 */
function runRepeat(_version: string, inputs: ReadonlyMap<string, Tensor>): DecoupledResponse[] {
  const values = decodeElements('INT32', input(inputs, 'IN').data).map(Number);
  const delay = inputs.get('DELAY'); // as long as IN: validateInputs checks dim 0 of every input agrees
  const delays = delay === undefined ? [] : decodeElements('UINT32', delay.data).map(Number);
  return values.map((value, i) => ({
    delayMs: delays[i] ?? 0,
    outputs: [
      { name: 'OUT', datatype: 'INT32', shape: [1], data: encodeElements('INT32', [value]) },
      { name: 'IDX', datatype: 'UINT32', shape: [1], data: encodeElements('UINT32', [i]) },
    ],
  }));
}

const MODEL_LIST: readonly Model[] = [
  {
    name: 'linear',
    platform: 'reference_linear',
    versions: ['1', '2'],
    ready: true,
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [{ name: 'SCORES', datatype: 'FP32', shape: [-1, 3] }, { name: 'CLASS', datatype: 'INT64', shape: [-1] }],
    run: runLinear,
  },
  {
    name: 'simple',
    platform: 'reference_simple',
    versions: ['1'],
    ready: true,
    inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [-1, 16] }, { name: 'INPUT1', datatype: 'INT32', shape: [-1, 16] }],
    outputs: [{ name: 'OUTPUT0', datatype: 'INT32', shape: [-1, 16] }, { name: 'OUTPUT1', datatype: 'INT32', shape: [-1, 16] }],
    run: runSimple,
  },
  ...DATATYPES.map(identityModel),
  {
    name: 'repeat_int32',
    platform: 'reference_repeat',
    versions: ['1'],
    ready: true,
    decoupled: true,
    inputs: [{ name: 'IN', datatype: 'INT32', shape: [-1] }, { name: 'DELAY', datatype: 'UINT32', shape: [-1], optional: true }],
    outputs: [{ name: 'OUT', datatype: 'INT32', shape: [1] }, { name: 'IDX', datatype: 'UINT32', shape: [1] }],
    run: () => {
      throw new TritonError('INTERNAL', 'decoupled model ran as a unary one');
    },
    respond: runRepeat,
  },
  {
    name: 'unready',
    platform: 'reference_unready',
    versions: ['1'],
    ready: false,
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1] }],
    outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [-1] }],
    run: () => {
      throw new TritonError('INTERNAL', 'unready model ran');
    },
  },
];

export const MODELS: ReadonlyMap<string, Model> = new Map(MODEL_LIST.map((m) => [m.name, m]));

/** Finds a model and the version a request addresses; versions compare numerically like Triton's ("01" is "1"). */
export function resolveModel(name: string, version?: string): { model: Model; version: string } {
  const model = MODELS.get(name);
  if (!model) throw new TritonError('NOT_FOUND', `Request for unknown model: '${name}' is not found`);
  if (!version) return { model, version: model.versions[model.versions.length - 1] ?? '' };
  const canonical = /^[0-9]+$/.test(version) ? BigInt(version).toString() : version;
  if (!model.versions.includes(canonical)) {
    throw new TritonError('NOT_FOUND', `Request for unknown model: '${name}' version ${version} is not found`);
  }
  return { model, version: canonical };
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** Like Triton: an explicit version lists just that version, otherwise every version. */
export function modelMetadata(name: string, version?: string): ModelMetadata {
  const resolved = resolveModel(name, version);
  const { model } = resolved;
  return {
    name: model.name,
    versions: version ? [resolved.version] : [...model.versions],
    platform: model.platform,
    inputs: model.inputs.map(specMetadata),
    outputs: model.outputs.map(specMetadata),
  };
}

const specMetadata = ({ name, datatype, shape }: TensorSpec): TensorSpec => ({ name, datatype, shape: [...shape] });

export interface RepositoryEntry {
  name: string;
  version: string;
  state: 'READY' | 'UNAVAILABLE';
  reason?: string;
}

export function repositoryIndex(readyOnly: boolean): RepositoryEntry[] {
  const rows: RepositoryEntry[] = [];
  for (const m of [...MODELS.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    for (const version of m.versions) {
      if (m.ready) rows.push({ name: m.name, version, state: 'READY' });
      else if (!readyOnly) rows.push({ name: m.name, version, state: 'UNAVAILABLE', reason: 'model is not ready' });
    }
  }
  return rows;
}

/**
 * The model and version an inference request gets, or the error Triton gives before it even reads the
 * request body: NOT_FOUND for an unknown model or version, UNAVAILABLE for one that is not ready.
 */
export function resolveServable(name: string, version?: string): { model: Model; version: string } {
  const resolved = resolveModel(name, version);
  if (!resolved.model.ready) {
    throw new TritonError('UNAVAILABLE', `Request for unknown model: '${name}' version ${resolved.version} is not at ready state`);
  }
  return resolved;
}

/**
 * What Triton's unary front ends answer for a decoupled model, before reading the request's tensors: they can
 * carry one response only. `endpoint` is how Triton names the front end in the message ("ModelInfer RPC",
 * "HTTP end point").
 */
export function refuseDecoupled(model: Model, endpoint: string): void {
  if (model.decoupled) throw new TritonError('UNSUPPORTED', `${endpoint} doesn't support models with decoupled transaction policy`);
}

export function infer(request: InferRequest): InferResult {
  const { model, version } = resolveServable(request.modelName, request.modelVersion);
  const inputs = validateInputs(model, request.inputs);
  const requested = validateOutputs(model, request.outputs ?? []);
  return { modelName: model.name, modelVersion: version, outputs: selectOutputs(model, model.run(version, inputs), requested) };
}

/** The outputs a request asked for (all when it names none), top-k classified where asked. */
function selectOutputs(model: Model, produced: Tensor[], requested: readonly RequestedOutput[]): Tensor[] {
  if (requested.length === 0) return produced;
  return requested.map((r) => {
    const tensor = produced.find((t) => t.name === r.name);
    if (!tensor) throw new TritonError('INTERNAL', `model '${model.name}' did not produce output '${r.name}'`);
    return r.classification ? classify(tensor, r.classification) : tensor;
  });
}

/** A decoupled model's responses to one request (ModelStreamInfer only), validated as infer() validates. */
export function inferDecoupled(request: InferRequest): { modelName: string; modelVersion: string; responses: DecoupledResponse[] } {
  const { model, version } = resolveServable(request.modelName, request.modelVersion);
  if (!model.respond) throw new TritonError('INTERNAL', `model '${model.name}' is not decoupled`);
  const inputs = validateInputs(model, request.inputs);
  const requested = validateOutputs(model, request.outputs ?? []);
  const responses = model.respond(version, inputs)
    .map((r) => ({ delayMs: r.delayMs, outputs: selectOutputs(model, r.outputs, requested) }));
  return { modelName: model.name, modelVersion: version, responses };
}

function validateInputs(model: Model, given: readonly Tensor[]): Map<string, Tensor> {
  const where = `for model '${model.name}'`;
  const byName = new Map<string, Tensor>();
  let batch: number | undefined;
  for (const t of given) {
    const spec = model.inputs.find((s) => s.name === t.name);
    if (!spec) throw invalidArg(`unexpected inference input '${t.name}' ${where}`);
    if (byName.has(t.name)) throw invalidArg(`input '${t.name}' appears more than once ${where}`);
    if (t.datatype !== spec.datatype) {
      throw invalidArg(`inference input '${t.name}' data-type is '${t.datatype}', but model '${model.name}' expects '${spec.datatype}'`);
    }
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw invalidArg(`All input dimensions should be specified for input '${t.name}' ${where}, got ${formatShape(t.shape)}`);
    }
    const fits = t.shape.length === spec.shape.length && spec.shape.every((d, i) => d < 0 || d === t.shape[i]);
    if (!fits) {
      throw invalidArg(`unexpected shape for input '${t.name}' ${where}. Expected ${formatShape(spec.shape)}, got ${formatShape(t.shape)}`);
    }
    if (batch !== undefined && t.shape[0] !== batch) {
      throw invalidArg(`input '${t.name}' batch size does not match other inputs ${where}`);
    }
    batch = t.shape[0];
    checkDataSize(t, where);
    byName.set(t.name, t);
  }
  const missing = model.inputs.filter((s) => !s.optional && !byName.has(s.name)).map((s) => `'${s.name}'`);
  if (missing.length > 0) {
    throw invalidArg(`expected ${model.inputs.length} inputs but got ${given.length} inputs ${where}: missing input ${missing.join(', ')}`);
  }
  return byName;
}

function checkDataSize(t: Tensor, where: string): void {
  const count = elementCount(t.shape);
  if (t.datatype !== 'BYTES') {
    const expected = count * ELEMENT_BYTES[t.datatype];
    if (t.data.length !== expected) {
      throw invalidArg(`input byte size mismatch for input '${t.name}' ${where}. Expected ${expected}, got ${t.data.length}`);
    }
    return;
  }
  let items: number;
  try {
    items = splitBytes(t.data).length;
  } catch (err) {
    throw invalidArg(`malformed BYTES data for input '${t.name}' ${where}: ${(err as Error).message}`);
  }
  if (items !== count) {
    throw invalidArg(`input '${t.name}' ${where} holds ${items} BYTES elements but its shape ${formatShape(t.shape)} needs ${count}`);
  }
}

function validateOutputs(model: Model, requested: readonly RequestedOutput[]): readonly RequestedOutput[] {
  const seen = new Set<string>();
  for (const r of requested) {
    if (!model.outputs.some((o) => o.name === r.name)) {
      throw invalidArg(`unexpected inference output '${r.name}' for model '${model.name}'`);
    }
    if (seen.has(r.name)) throw invalidArg(`output '${r.name}' is requested more than once for model '${model.name}'`);
    seen.add(r.name);
    const k = r.classification ?? 0;
    if (!Number.isSafeInteger(k) || k < 0) {
      throw invalidArg(`classification for output '${r.name}' must be a non-negative integer, got ${k}`);
    }
  }
  return requested;
}

/**
 * Triton's classification extension: per batch row, the top k values (ties keep index order) as BYTES
 * "value:index", the value printed like C++ std::to_string (six decimals). There are no label files here.
 */
function classify(t: Tensor, k: number): Tensor {
  if (t.datatype === 'BYTES' || t.datatype === 'BOOL' || t.datatype === 'FP16' || t.datatype === 'BF16') {
    throw invalidArg(`classification is not supported for output '${t.name}' of datatype ${t.datatype}`);
  }
  const values = decodeElements(t.datatype, t.data).map(Number);
  const rows = t.shape[0] ?? 0;
  const perRow = rows === 0 ? 0 : values.length / rows;
  const take = Math.min(k, perRow);
  const labels: Buffer[] = [];
  for (let r = 0; r < rows; r++) {
    const row = values.slice(r * perRow, (r + 1) * perRow);
    const order = row.map((_, i) => i).sort((i, j) => (row[j] ?? 0) - (row[i] ?? 0) || i - j);
    for (const i of order.slice(0, take)) labels.push(Buffer.from(`${(row[i] ?? 0).toFixed(6)}:${i}`));
  }
  return { name: t.name, datatype: 'BYTES', shape: [rows, take], data: encodeElements('BYTES', labels) };
}
