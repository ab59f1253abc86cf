import { crc32 } from 'node:zlib';
import { parseDataType } from '../core/datatypes.js';
import { GatewayError } from '../core/errors.js';
import type { InferResponse } from '../core/inference.js';
import type { ParameterValue, Parameters } from '../core/parameters.js';
import { checkTensorData, type Tensor } from '../core/tensor.js';

/**
 * A cached InferResponse as bytes:
 *
 *   "IGC1" | crc32 (u32 LE, over everything after the 12-byte prefix) | header length (u32 LE) | JSON header | data
 *
 * The JSON header holds the model, version, id, parameters and each output's
 * name, datatype, shape, parameters and data length; the outputs' raw Buffers
 * follow in order, as they are (BYTES keeps its 4-byte length framing). Decoding
 * checks everything (magic, checksum, lengths, datatypes, shapes against data)
 * and hands out tensors that are views into the entry (no copies).
 */

const MAGIC = Buffer.from('IGC1', 'latin1');
const PREFIX = 12;

/** A parameter value with its kind, so bigints and non-finite numbers survive JSON: [kind, value]. */
type EncodedValue = ['s', string] | ['n', number] | ['f', string] | ['b', boolean] | ['i', string];
type EncodedParameters = [string, ...EncodedValue][];

interface HeaderOutput {
  n: string;
  d: string;
  s: number[];
  l: number;
  p?: EncodedParameters;
}

interface Header {
  m: string;
  v: string;
  i?: string;
  p?: EncodedParameters;
  o: HeaderOutput[];
}

export function encodeCachedResponse(resp: InferResponse): Buffer {
  const header: Header = { m: resp.model, v: resp.version, o: [] };
  if (resp.id !== undefined) header.i = resp.id;
  const p = encodeParameters(resp.parameters);
  if (p !== undefined) header.p = p;
  let dataLength = 0;
  for (const t of resp.outputs) {
    const o: HeaderOutput = { n: t.name, d: t.datatype, s: [...t.shape], l: t.data.length };
    const tp = encodeParameters(t.parameters);
    if (tp !== undefined) o.p = tp;
    header.o.push(o);
    dataLength += t.data.length;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(PREFIX + json.length + dataLength);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(json.length, 8);
  json.copy(out, PREFIX);
  let off = PREFIX + json.length;
  for (const t of resp.outputs) {
    out.set(t.data, off);
    off += t.data.length;
  }
  out.writeUInt32LE(crc32(out.subarray(PREFIX)), 4);
  return out;
}

/** The response an entry holds; throws a DATA_LOSS GatewayError on anything malformed. */
export function decodeCachedResponse(buf: Buffer): InferResponse {
  if (buf.length < PREFIX || !buf.subarray(0, 4).equals(MAGIC)) corrupt('not a cache entry (bad magic)');
  const headerLength = buf.readUInt32LE(8);
  if (headerLength > buf.length - PREFIX) corrupt(`header length ${headerLength} exceeds the entry of ${buf.length} bytes`);
  if (crc32(buf.subarray(PREFIX)) !== buf.readUInt32LE(4)) corrupt('checksum mismatch');
  let raw: unknown;
  try {
    raw = JSON.parse(buf.toString('utf8', PREFIX, PREFIX + headerLength));
  } catch (err) {
    corrupt(`malformed header: ${(err as Error).message}`);
  }
  if (!isRecord(raw)) corrupt('header is not an object');
  const model = raw.m;
  const version = raw.v;
  if (typeof model !== 'string' || typeof version !== 'string') corrupt('model or version missing');
  if (raw.i !== undefined && typeof raw.i !== 'string') corrupt('id is not a string');
  if (!Array.isArray(raw.o)) corrupt('outputs missing');
  const parameters = decodeParameters(raw.p, 'response');

  let off = PREFIX + headerLength;
  const outputs: Tensor[] = (raw.o as unknown[]).map((o, index) => {
    if (!isRecord(o)) corrupt(`output ${index} is not an object`);
    const { n: name, d, s: shape, l: length } = o;
    if (typeof name !== 'string') corrupt(`output ${index} has no name`);
    const datatype = typeof d === 'string' ? parseDataType(d) : undefined;
    if (datatype === undefined) corrupt(`output '${name}' has an unknown datatype`);
    if (!Array.isArray(shape) || !shape.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
      corrupt(`output '${name}' has a malformed shape`);
    }
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0 || length > buf.length - off) {
      corrupt(`output '${name}' has a data length beyond the entry`);
    }
    const data = buf.subarray(off, off + length);
    off += length;
    try {
      checkTensorData(datatype, shape as number[], data, `output '${name}'`);
    } catch (err) {
      corrupt((err as Error).message);
    }
    const tp = decodeParameters(o.p, `output '${name}'`);
    return { name, datatype, shape: shape as number[], data, ...(tp !== undefined ? { parameters: tp } : {}) };
  });
  if (off !== buf.length) corrupt(`${buf.length - off} bytes after the last output`);
  return {
    model,
    version,
    ...(typeof raw.i === 'string' ? { id: raw.i } : {}),
    ...(parameters !== undefined ? { parameters } : {}),
    outputs,
  };
}

function encodeParameters(p: Parameters | undefined): EncodedParameters | undefined {
  if (p === undefined) return undefined;
  const keys = Object.keys(p);
  if (keys.length === 0) return undefined;
  return keys.map((k) => [k, ...encodeValue(p[k]!)]);
}

function encodeValue(v: ParameterValue): EncodedValue {
  switch (typeof v) {
    case 'string':
      return ['s', v];
    case 'number':
      // JSON has no NaN or Infinity: those go as text.
      return Number.isFinite(v) ? ['n', v] : ['f', String(v)];
    case 'boolean':
      return ['b', v];
    case 'bigint':
      return ['i', v.toString()];
  }
}

function decodeParameters(raw: unknown, what: string): Parameters | undefined {
  if (raw === undefined) return undefined;
  if (!Array.isArray(raw)) corrupt(`${what}: parameters are not a list`);
  const entries = raw.map((e: unknown): [string, ParameterValue] => {
    if (!Array.isArray(e) || e.length !== 3 || typeof e[0] !== 'string') corrupt(`${what}: malformed parameter`);
    const [key, kind, v] = e as [string, unknown, unknown];
    if (kind === 's' && typeof v === 'string') return [key, v];
    if (kind === 'n' && typeof v === 'number') return [key, v];
    if (kind === 'f' && (v === 'NaN' || v === 'Infinity' || v === '-Infinity')) return [key, Number(v)];
    if (kind === 'b' && typeof v === 'boolean') return [key, v];
    if (kind === 'i' && typeof v === 'string' && /^-?\d{1,20}$/.test(v)) return [key, BigInt(v)];
    corrupt(`${what}: parameter '${key}' is malformed`);
  });
  // fromEntries, so a "__proto__" key stays plain data.
  return Object.fromEntries(entries);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function corrupt(reason: string): never {
  throw new GatewayError('DATA_LOSS', `corrupt cache entry: ${reason}`);
}
