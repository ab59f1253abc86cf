import { DATATYPES, parseDataType, type DataType } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import type { ParameterValue, Parameters } from '../../core/parameters.js';
import { encodeElements, flattenValues } from '../../core/tensor-values.js';
import { checkShape, checkTensorData, elementCount, type Tensor } from '../../core/tensor.js';
import { parseJsonExact } from './json-exact.js';

/**
 * Validation of v2 REST JSON into canonical values. Everything a client can
 * send is checked here, once, and every failure is INVALID_ARGUMENT with a
 * message naming the field and the tensor: no TypeError can escape for any
 * input.
 */

export type JsonObject = Readonly<Record<string, unknown>>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The JSON section of a body as an object; `exact` says 64-bit integer literals may have come back as bigints. */
export function parseJsonObject(json: Buffer, what: string): { readonly body: JsonObject; readonly exact: boolean } {
  let parsed: { readonly value: unknown; readonly exact: boolean };
  try {
    parsed = parseJsonExact(json.toString('utf8'));
  } catch (err) {
    throw invalidArgument(`malformed JSON: ${(err as Error).message}`, err);
  }
  const { value, exact } = parsed;
  if (!isObject(value)) throw invalidArgument(`${what} must be a JSON object, got ${kindOf(value)}`);
  return { body: value, exact };
}

export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export function optionalString(obj: JsonObject, key: string, what: string): string | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw invalidArgument(`${what}: '${key}' must be a string, got ${kindOf(v)}`);
  return v;
}

/**
 * Parameters split into the ones passed on and the transport ones the codec
 * consumes. `rest` is undefined when nothing is left to pass on.
 */
export interface SplitParameters {
  readonly rest?: Parameters;
  readonly transport: ReadonlyMap<string, ParameterValue>;
}

const NO_TRANSPORT: ReadonlyMap<string, ParameterValue> = new Map();

export function parseParameters(raw: unknown, what: string, transportKeys: readonly string[]): SplitParameters {
  if (raw === undefined) return { transport: NO_TRANSPORT };
  if (!isObject(raw)) throw invalidArgument(`${what}: 'parameters' must be an object, got ${kindOf(raw)}`);
  const keys = Object.keys(raw);
  let transport: Map<string, ParameterValue> | undefined;
  for (const key of keys) {
    const v = raw[key];
    if (!isParameterValue(v)) {
      throw invalidArgument(`${what}: parameter '${key}' must be a string, a number or a boolean, got ${kindOf(v)}`);
    }
    if (transportKeys.includes(key)) (transport ??= new Map()).set(key, v);
  }
  if (transport === undefined) return { transport: NO_TRANSPORT, ...(keys.length > 0 ? { rest: raw as Parameters } : {}) };
  const kept = Object.entries(raw as Parameters).filter(([key]) => !transport.has(key));
  // fromEntries, not assignment, so a "__proto__" key stays plain data.
  return { transport, ...(kept.length > 0 ? { rest: Object.fromEntries(kept) } : {}) };
}

function isParameterValue(v: unknown): v is ParameterValue {
  return typeof v === 'string' || typeof v === 'boolean' || typeof v === 'bigint' || (typeof v === 'number' && Number.isFinite(v));
}

export function booleanParameter(params: SplitParameters, key: string, what: string): boolean | undefined {
  const v = params.transport.get(key);
  if (v === undefined || typeof v === 'boolean') return v;
  throw invalidArgument(`${what}: parameter '${key}' must be a boolean, got ${kindOf(v)}`);
}

function sizeParameter(params: SplitParameters, key: string, what: string): number | undefined {
  const v = params.transport.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw invalidArgument(`${what}: parameter '${key}' must be a non-negative integer, got ${String(v)}`);
}

/** The blob section of a binary-extension body, handed out in order as the tensors ask for it. */
export class BlobReader {
  private offset = 0;

  constructor(private readonly blobs: Buffer) {}

  take(size: number, what: string): Buffer {
    const left = this.blobs.length - this.offset;
    if (size > left) {
      throw invalidArgument(`${what}: binary_data_size ${size} exceeds the ${left} bytes of binary data left in the body`);
    }
    const data = this.blobs.subarray(this.offset, this.offset + size);
    this.offset += size;
    return data;
  }

  /** Every byte must belong to a tensor: leftovers mean the sizes and the body disagree. */
  finish(): void {
    if (this.offset !== this.blobs.length) {
      throw invalidArgument(
        `the binary data section holds ${this.blobs.length} bytes but the tensors' binary_data_size add up to ${this.offset}`,
      );
    }
  }
}

const BINARY_DATA_SIZE = 'binary_data_size';
const TENSOR_TRANSPORT_KEYS = [BINARY_DATA_SIZE] as const;

/** Where tensor data comes from besides JSON `data`, and whether that JSON may hold bigints. */
export interface TensorSource {
  readonly blobs: BlobReader | undefined;
  readonly exact: boolean;
}

/**
 * A list of tensors ("input"s of a request or "output"s of a response), with
 * data from JSON `data` or from the blobs by `binary_data_size`.
 */
export function parseTensors(raw: unknown, kind: 'input' | 'output', source: TensorSource): Tensor[] {
  const field = `${kind}s`;
  if (raw === undefined) throw invalidArgument(`'${field}' is missing`);
  if (!Array.isArray(raw)) throw invalidArgument(`'${field}' must be an array, got ${kindOf(raw)}`);
  const seen = new Set<string>();
  const tensors: Tensor[] = [];
  for (let i = 0; i < raw.length; i++) {
    const tensor = parseTensor(raw[i] as unknown, `${kind} ${i}`, kind, source);
    if (seen.has(tensor.name)) throw invalidArgument(`${kind} '${tensor.name}' appears more than once`);
    seen.add(tensor.name);
    tensors.push(tensor);
  }
  return tensors;
}

function parseTensor(raw: unknown, position: string, kind: string, source: TensorSource): Tensor {
  if (!isObject(raw)) throw invalidArgument(`${position} must be an object, got ${kindOf(raw)}`);
  const name = raw.name;
  if (typeof name !== 'string' || name === '') throw invalidArgument(`${position}: 'name' must be a non-empty string`);
  const what = `${kind} '${name}'`;
  const datatype = parseDatatypeField(raw.datatype, what);
  const shape = parseShape(raw.shape, what);
  const params = parseParameters(raw.parameters, what, TENSOR_TRANSPORT_KEYS);
  const binarySize = sizeParameter(params, BINARY_DATA_SIZE, what);
  const data =
    binarySize === undefined
      ? jsonData(raw.data, datatype, shape, source.exact, what)
      : binaryData(raw.data, binarySize, source.blobs, datatype, shape, what);
  return { name, datatype, shape, data, ...(params.rest !== undefined ? { parameters: params.rest } : {}) };
}

function parseDatatypeField(raw: unknown, what: string): DataType {
  if (raw === undefined) throw invalidArgument(`${what}: 'datatype' is missing`);
  const datatype = typeof raw === 'string' ? parseDataType(raw) : undefined;
  if (datatype === undefined) {
    const shown = typeof raw === 'string' ? `'${raw.length > 32 ? `${raw.slice(0, 32)}…` : raw}'` : kindOf(raw);
    throw invalidArgument(`${what}: unknown datatype ${shown}; valid datatypes are ${DATATYPES.join(', ')}`);
  }
  return datatype;
}

function parseShape(raw: unknown, what: string): number[] {
  if (raw === undefined) throw invalidArgument(`${what}: 'shape' is missing`);
  if (!Array.isArray(raw)) throw invalidArgument(`${what}: 'shape' must be an array of non-negative integers, got ${kindOf(raw)}`);
  checkShape(raw, what);
  return raw;
}

function jsonData(raw: unknown, datatype: DataType, shape: readonly number[], exact: boolean, what: string): Buffer {
  if (raw === undefined) throw invalidArgument(`${what}: 'data' is missing (and no binary_data_size parameter says it is binary)`);
  const values = flattenValues(raw, what);
  const count = elementCount(shape);
  if (values.length !== count) {
    throw invalidArgument(`${what}: shape [${shape.join(',')}] needs ${count} elements, 'data' holds ${values.length}`);
  }
  return encodeElements(datatype, exact && isFloat(datatype) ? bigintsToNumbers(values) : values, what);
}

function binaryData(
  raw: unknown,
  size: number,
  blobs: BlobReader | undefined,
  datatype: DataType,
  shape: readonly number[],
  what: string,
): Buffer {
  if (raw !== undefined) throw invalidArgument(`${what}: has both 'data' and a binary_data_size parameter; send one`);
  if (blobs === undefined) {
    throw invalidArgument(`${what}: has binary_data_size but the body has no binary data (no Inference-Header-Content-Length header)`);
  }
  const data = blobs.take(size, what);
  checkTensorData(datatype, shape, data, what);
  return data;
}

function isFloat(datatype: DataType): boolean {
  return datatype === 'FP16' || datatype === 'BF16' || datatype === 'FP32' || datatype === 'FP64';
}

/** Integer literals beyond 2^53 parse as bigints; in a float tensor they are plain (rounded) numbers. */
function bigintsToNumbers(values: unknown[]): unknown[] {
  return values.map((v) => (typeof v === 'bigint' ? Number(v) : v));
}
