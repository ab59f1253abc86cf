// The reference server's model repository: deterministic models with TF-style signatures, servable resolution
// (versions, labels, readiness) and the request validation TF Serving's predict path performs. Both front ends
// (rest.ts, grpc.ts) decode into Tensors and call predict(); nothing here knows about HTTP or gRPC.
import { TF_NAME, elementCount, type DType, type Tensor } from './dtypes.js';

/** The absl status codes this server produces; each front end maps them to its own status. */
export type ErrorCode = 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' | 'NOT_FOUND' | 'UNAVAILABLE' | 'INTERNAL';

export class ServingError extends Error {
  override readonly name = 'ServingError';
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
  }
}

const invalidArg = (message: string): ServingError => new ServingError('INVALID_ARGUMENT', message);

export const DEFAULT_SIGNATURE = 'serving_default';
export const PREDICT_METHOD = 'tensorflow/serving/predict';

export interface TensorSpec {
  /** The key clients use in inputs/outputs maps. */
  readonly alias: string;
  /** The graph tensor behind the alias (TensorInfo.name is "<tensor>:0"); the model's run() is keyed by it. */
  readonly tensor: string;
  readonly dtype: DType;
  /** -1 is an unknown dimension; dimension 0 is always the batch. */
  readonly shape: readonly number[];
}

export interface Signature {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  readonly methodName: string;
}

export interface Model {
  readonly name: string;
  /** Ascending; the last one is what a request without version gets. */
  readonly versions: readonly number[];
  readonly labels: Readonly<Record<string, number>>;
  /** LOADING models are listed by GetModelStatus but cannot serve. */
  readonly state: 'AVAILABLE' | 'LOADING';
  readonly signatures: Readonly<Record<string, Signature>>;
  /** Called with validated inputs keyed by graph tensor name; returns every graph output, keyed the same way. */
  run(version: number, inputs: ReadonlyMap<string, Tensor>): Map<string, Tensor>;
}

/** How a request addresses a servable: name plus at most one of version and label. */
export interface ServableRequest {
  name: string;
  /** Decimal digits (an int64). */
  version?: string;
  label?: string;
}

const spec = (alias: string, dtype: DType, shape: readonly number[], tensor = alias): TensorSpec => ({ alias, tensor, dtype, shape });
const signature = (inputs: TensorSpec[], outputs: TensorSpec[]): Signature => ({ inputs, outputs, methodName: PREDICT_METHOD });

function input(inputs: ReadonlyMap<string, Tensor>, name: string): Tensor {
  const t = inputs.get(name);
  if (!t) throw new ServingError('INTERNAL', `model ran without input '${name}'`);
  return t;
}

// Same weights and float32 evaluation order as reference/triton/models.ts, so both backends give the same bits.
const LINEAR_W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]] as const;
const LINEAR_BIAS: Readonly<Record<number, readonly number[]>> = { 1: [0.1, -0.2, 0.3], 2: [1, 0, -1] };

/**
 * SCORES = x·W + b in float32: acc = 0; for k in 0..3: acc = f32(acc + f32(x[k] * W[k][j])); acc = f32(acc + f32(b[j])).
 * CLASS is the index of the first maximum score.
 */
function runLinear(version: number, inputs: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
  const x = input(inputs, 'INPUT0');
  const bias = LINEAR_BIAS[version] ?? [];
  const rows = x.shape[0] ?? 0;
  const scores: number[] = [];
  const classes: bigint[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bestScore = -Infinity;
    for (let j = 0; j < 3; j++) {
      let acc = 0;
      for (let k = 0; k < 4; k++) acc = Math.fround(acc + Math.fround(Number(x.values[r * 4 + k]) * (LINEAR_W[k]?.[j] ?? 0)));
      acc = Math.fround(acc + Math.fround(bias[j] ?? 0));
      scores.push(acc);
      if (acc > bestScore) [best, bestScore] = [j, acc]; // strict '>' so the first maximum wins
    }
    classes.push(BigInt(best));
  }
  return new Map([
    ['SCORES', { dtype: 'DT_FLOAT', shape: [rows, 3], values: scores }],
    ['CLASS', { dtype: 'DT_INT64', shape: [rows], values: classes }],
  ]);
}

function runSimple(_version: number, inputs: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
  const a = input(inputs, 'INPUT0');
  const b = input(inputs, 'INPUT1');
  const sum = a.values.map((x, i) => (Number(x) + Number(b.values[i])) | 0); // '| 0' gives int32 wrap-around
  const diff = a.values.map((x, i) => (Number(x) - Number(b.values[i])) | 0);
  return new Map([
    ['OUTPUT0', { dtype: 'DT_INT32', shape: [...a.shape], values: sum }],
    ['OUTPUT1', { dtype: 'DT_INT32', shape: [...a.shape], values: diff }],
  ]);
}

/** identity_<suffix> names follow the Triton reference (KServe v2 datatype, lower case). */
export const IDENTITY_SUFFIX: Readonly<Record<DType, string>> = {
  DT_BOOL: 'bool', DT_UINT8: 'uint8', DT_UINT16: 'uint16', DT_UINT32: 'uint32', DT_UINT64: 'uint64',
  DT_INT8: 'int8', DT_INT16: 'int16', DT_INT32: 'int32', DT_INT64: 'int64',
  DT_HALF: 'fp16', DT_BFLOAT16: 'bf16', DT_FLOAT: 'fp32', DT_DOUBLE: 'fp64', DT_STRING: 'bytes',
};

function identityModel(dtype: DType): Model {
  const signatures: Record<string, Signature> = {
    [DEFAULT_SIGNATURE]: signature([spec('INPUT0', dtype, [-1, -1])], [spec('OUTPUT0', dtype, [-1, -1])]),
  };
  // REST writes DT_STRING outputs whose alias ends in "_bytes" as {"b64": …}; this signature exercises that.
  if (dtype === 'DT_STRING') {
    signatures.bytes_out = signature([spec('INPUT0', dtype, [-1, -1])], [spec('OUTPUT0_bytes', dtype, [-1, -1], 'OUTPUT0')]);
  }
  return {
    name: `identity_${IDENTITY_SUFFIX[dtype]}`,
    versions: [1],
    labels: {},
    state: 'AVAILABLE',
    signatures,
    run: (_v, inputs) => {
      const x = input(inputs, 'INPUT0');
      return new Map([['OUTPUT0', { dtype, shape: [...x.shape], values: [...x.values] }]]);
    },
  };
}

const LINEAR_INPUT = spec('INPUT0', 'DT_FLOAT', [-1, 4]);
const SCORES = spec('SCORES', 'DT_FLOAT', [-1, 3]);
const SIMPLE_INPUTS = [spec('INPUT0', 'DT_INT32', [-1, 16]), spec('INPUT1', 'DT_INT32', [-1, 16])];

const MODEL_LIST: readonly Model[] = [
  {
    name: 'linear',
    versions: [1, 2],
    labels: { stable: 1, canary: 2 },
    state: 'AVAILABLE',
    signatures: {
      [DEFAULT_SIGNATURE]: signature([LINEAR_INPUT], [SCORES, spec('CLASS', 'DT_INT64', [-1])]),
      scores_only: signature([LINEAR_INPUT], [SCORES]),
    },
    run: runLinear,
  },
  {
    name: 'simple',
    versions: [1],
    labels: {},
    state: 'AVAILABLE',
    signatures: {
      [DEFAULT_SIGNATURE]: signature(SIMPLE_INPUTS, [spec('OUTPUT0', 'DT_INT32', [-1, 16]), spec('OUTPUT1', 'DT_INT32', [-1, 16])]),
    },
    run: runSimple,
  },
  ...(Object.keys(IDENTITY_SUFFIX) as DType[]).map(identityModel),
  {
    name: 'unready',
    versions: [1],
    labels: {},
    state: 'LOADING',
    signatures: { [DEFAULT_SIGNATURE]: signature([spec('INPUT0', 'DT_FLOAT', [-1])], [spec('OUTPUT0', 'DT_FLOAT', [-1])]) },
    run: () => {
      throw new ServingError('INTERNAL', 'unready model ran');
    },
  },
];

export const MODELS: ReadonlyMap<string, Model> = new Map(MODEL_LIST.map((m) => [m.name, m]));

/** How TF Serving prints a ServableRequest in "Servable not found" messages. */
function describeRequest(name: string, version: number | undefined): string {
  return version === undefined ? `Latest(${name})` : `Specific(${name}, ${version})`;
}

/** The version a label or explicit version names, without checking the model has it. */
function requestedVersion(req: ServableRequest): number | undefined {
  if (req.label !== undefined) {
    const version = MODELS.get(req.name)?.labels[req.label];
    if (version === undefined) throw invalidArg(`Unrecognized servable version label: ${req.label}`);
    return version;
  }
  return req.version === undefined ? undefined : Number(req.version);
}

/** The servable a predict or metadata request runs on: NOT_FOUND if it does not exist, UNAVAILABLE if not loaded. */
export function resolveServable(req: ServableRequest): { model: Model; version: number } {
  const requested = requestedVersion(req);
  const model = MODELS.get(req.name);
  const version = requested ?? model?.versions[model.versions.length - 1];
  if (!model || version === undefined || !model.versions.includes(version)) {
    throw new ServingError('NOT_FOUND', `Servable not found for request: ${describeRequest(req.name, requested)}`);
  }
  if (model.state !== 'AVAILABLE') {
    throw new ServingError('UNAVAILABLE', `Servable ${describeRequest(req.name, requested)} is not available: version ${version} is ${model.state}`);
  }
  return { model, version };
}

export function resolveSignature(model: Model, name: string): { name: string; signature: Signature } {
  const key = name || DEFAULT_SIGNATURE;
  const found = model.signatures[key];
  if (!found) throw new ServingError('FAILED_PRECONDITION', `Serving signature key "${key}" not found.`);
  if (found.methodName !== PREDICT_METHOD) {
    throw invalidArg(`Expected prediction signature method_name to be ${PREDICT_METHOD}. Was: ${found.methodName}`);
  }
  return { name: key, signature: found };
}

export interface VersionStatus {
  version: number;
  state: 'AVAILABLE' | 'LOADING';
}

/** GetModelStatus: every version, newest first (TF's state monitor orders by std::greater), or just the one asked for. */
export function modelStatus(req: ServableRequest): VersionStatus[] {
  const model = MODELS.get(req.name);
  if (!model) throw new ServingError('NOT_FOUND', `Could not find any versions of model ${req.name}`);
  const requested = requestedVersion(req);
  if (requested !== undefined && !model.versions.includes(requested)) {
    throw new ServingError('NOT_FOUND', `Could not find version ${requested} of model ${req.name}`);
  }
  const versions = requested === undefined ? [...model.versions].reverse() : [requested];
  return versions.map((version) => ({ version, state: model.state }));
}

export interface PredictRequest {
  servable: ServableRequest;
  signatureName: string;
  /** Keyed by input alias. */
  inputs: ReadonlyMap<string, Tensor>;
  /** Output aliases; empty means every output of the signature. */
  outputFilter: readonly string[];
}

export interface PredictResult {
  modelName: string;
  version: number;
  signatureName: string;
  /** In signature order, keyed by alias. */
  outputs: { alias: string; tensor: Tensor }[];
}

export type InferHook = () => Promise<void>;

export function predict(req: PredictRequest): PredictResult {
  const { model, version } = resolveServable(req.servable);
  const { name: signatureName, signature: sig } = resolveSignature(model, req.signatureName);
  const inputs = validateInputs(sig, req.inputs);
  const wanted = validateOutputFilter(sig, req.outputFilter);
  const produced = model.run(version, inputs);
  const outputs = sig.outputs.filter((o) => wanted.size === 0 || wanted.has(o.alias)).map((o) => {
    const tensor = produced.get(o.tensor);
    if (!tensor) throw new ServingError('INTERNAL', `model '${model.name}' did not produce '${o.tensor}'`);
    return { alias: o.alias, tensor };
  });
  return { modelName: model.name, version, signatureName, outputs };
}

const braces = (names: Iterable<string>): string => `{${[...names].join(',')}}`;
const formatShape = (shape: readonly number[]): string => `[${shape.join(',')}]`;

/** Checks the inputs against the signature like predict_util.cc and the session would; returns them by graph tensor name. */
function validateInputs(sig: Signature, given: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
  const expected = sig.inputs.map((s) => s.alias);
  const extra = [...given.keys()].filter((k) => !expected.includes(k));
  const missing = expected.filter((k) => !given.has(k));
  if (extra.length > 0 || missing.length > 0) {
    throw invalidArg(
      `input size does not match signature: ${given.size}!=${expected.length} len(${braces(given.keys())}) != len(${braces(expected)}). `
        + `Sent extra: ${braces(extra)}. Missing but required: ${braces(missing)}.`,
    );
  }
  const byTensor = new Map<string, Tensor>();
  let batch: number | undefined;
  sig.inputs.forEach((s, i) => {
    const t = given.get(s.alias);
    if (!t) return;
    if (t.dtype !== s.dtype) throw invalidArg(`Expects arg[${i}] to be ${TF_NAME[s.dtype]} but ${TF_NAME[t.dtype]} is provided`);
    const fits = t.shape.length === s.shape.length && s.shape.every((d, k) => d < 0 || d === t.shape[k]);
    if (!fits) throw invalidArg(`input '${s.alias}' has shape ${formatShape(t.shape)}, which is incompatible with ${formatShape(s.shape)}`);
    if (batch !== undefined && t.shape[0] !== batch) throw invalidArg(`input '${s.alias}' has batch size ${t.shape[0]} but other inputs have ${batch}`);
    batch = t.shape[0];
    if (t.values.length !== elementCount(t.shape)) {
      throw new ServingError('INTERNAL', `input '${s.alias}' holds ${t.values.length} values for shape ${formatShape(t.shape)}`);
    }
    byTensor.set(s.tensor, t);
  });
  return byTensor;
}

function validateOutputFilter(sig: Signature, filter: readonly string[]): Set<string> {
  const seen = new Set<string>();
  for (const alias of filter) {
    if (!sig.outputs.some((o) => o.alias === alias)) {
      throw invalidArg(`output tensor alias not found in signature: ${alias} Outputs expected to be in the set ${braces(sig.outputs.map((o) => o.alias))}.`);
    }
    if (seen.has(alias)) throw invalidArg(`duplicate output tensor name: ${alias}`);
    seen.add(alias);
  }
  return seen;
}

