import { parseDataType, type DataType } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import type { ModelMetadata, TensorMetadata } from '../../core/inference.js';
import type { Tensor } from '../../core/tensor.js';
import type { ModelVersionStatusMessage, SignatureDefMapMessage } from './grpc-proto.js';
import { isB64, isJsonObject, parseTfJson, tensorFromJson, tensorJson, tensorRowsJson, type JsonValue } from './rest-json.js';
import { readyFromStatus, servedVersion, signatureDefMapFor } from './signature.js';

/**
 * TF Serving's REST bodies (g3doc/api_rest.md) to and from canonical tensors.
 * One codec for both directions: the TF Serving REST adapter encodes predict
 * requests and decodes replies; the gateway's TF Serving front door decodes
 * requests and encodes replies.
 *
 * TF's JSON names no datatypes, so reading a request needs the inputs'
 * datatypes and reading a reply the outputs' (from the signature, as v2
 * metadata).
 *
 * Two layouts. Row ("instances"): a list with one entry per batch item, each
 * `{input: value}` (or the bare value when there is one input); the answer is
 * "predictions" in the same layout. Columnar ("inputs"): `{input: tensor}` (or
 * the bare tensor for one input); the answer is "outputs" likewise.
 */
export type RestFormat = 'row' | 'columnar';

/** Output names ending in this are written as {"b64"} whatever they hold (TF's convention for binary outputs). */
const BYTES_SUFFIX = '_bytes';

// ---- predict requests -----------------------------------------------------------

/** A parsed :predict body before its values are typed: which signature, which layout, and the values. */
export interface PredictBody {
  readonly signatureName?: string;
  readonly format: RestFormat;
  readonly payload: JsonValue;
}

export function parsePredictBody(body: Buffer): PredictBody {
  const json = parseTfJson(body, 'the predict request');
  if (!isJsonObject(json)) throw invalidArgument('the predict request must be a JSON object');
  const signatureName = json.signature_name;
  if (signatureName !== undefined && typeof signatureName !== 'string') throw invalidArgument("'signature_name' must be a string");
  const hasRows = json.instances !== undefined;
  const hasColumns = json.inputs !== undefined;
  if (hasRows && hasColumns) throw invalidArgument("the predict request must hold one of 'instances' (row format) or 'inputs' (columnar format), not both");
  if (!hasRows && !hasColumns) throw invalidArgument("the predict request needs 'instances' (row format) or 'inputs' (columnar format)");
  return {
    ...(signatureName !== undefined ? { signatureName } : {}),
    format: hasRows ? 'row' : 'columnar',
    payload: hasRows ? json.instances : json.inputs,
  };
}

/** The input tensors of a parsed body, typed by the model's input metadata. */
export function predictInputs(body: PredictBody, inputs: readonly TensorMetadata[]): Tensor[] {
  const typeOf = (name: string, where: string): DataType => {
    const meta = inputs.find((t) => t.name === name);
    if (meta === undefined) {
      throw invalidArgument(`${where} names '${name}', which is not an input of the model (its inputs: ${inputs.map((t) => t.name).join(', ') || 'none'})`);
    }
    const datatype = parseDataType(meta.datatype);
    if (datatype === undefined) throw invalidArgument(`input '${name}' has datatype ${meta.datatype}, which TF's JSON cannot carry`);
    return datatype;
  };
  const only = (where: string): string => {
    if (inputs.length !== 1) {
      throw invalidArgument(`${where} holds unnamed values, but the model has ${inputs.length} inputs: name each (${inputs.map((t) => t.name).join(', ')})`);
    }
    return inputs[0]!.name;
  };
  const tensor = (name: string, value: JsonValue, where: string): Tensor => tensorFromJson(name, value, typeOf(name, where), `input '${name}'`);

  if (body.format === 'columnar') {
    const payload = body.payload;
    if (!isJsonObject(payload) || isB64(payload)) return [tensor(only("'inputs'"), payload, "'inputs'")];
    return Object.entries(payload).map(([name, value]) => tensor(name, value, "'inputs'"));
  }
  const rows = body.payload;
  if (!Array.isArray(rows)) throw invalidArgument("'instances' must be a list with one entry per batch item");
  if (rows.length === 0) throw invalidArgument("'instances' is empty: it needs at least one row");
  const first: unknown = rows[0];
  if (!isJsonObject(first) || isB64(first)) {
    if (rows.some((r) => isJsonObject(r) && !isB64(r))) throw invalidArgument("'instances' mixes named ({input: value}) and unnamed rows");
    const name = only("'instances'");
    return [tensor(name, rows, "'instances'")];
  }
  // Named rows: every row names the same inputs; each input's rows stack along a new dimension 0.
  const names = Object.keys(first);
  const columns = names.map((): JsonValue[] => []);
  rows.forEach((row: unknown, i) => {
    if (!isJsonObject(row) || isB64(row)) throw invalidArgument(`'instances' row ${i} is not an object like row 0 ({input: value})`);
    const keys = Object.keys(row);
    if (keys.length !== names.length || keys.some((k) => !names.includes(k))) {
      throw invalidArgument(`'instances' row ${i} names inputs {${keys.join(',')}} but row 0 names {${names.join(',')}}; every row needs the same inputs`);
    }
    names.forEach((name, k) => columns[k]!.push(row[name]));
  });
  return names.map((name, k) => tensor(name, columns[k], "'instances'"));
}

/**
 * A :predict body for `inputs`. The row layout needs every input to share
 * dimension 0 (the batch); when they do not (or one is a scalar, or the batch
 * is empty, which TF refuses as "no values in instances"), the request is sent
 * columnar instead, which carries any shapes. The layout used is returned:
 * it decides how the reply is laid out.
 */
export function encodePredictRequest(
  inputs: readonly Tensor[],
  signatureName: string | undefined,
  format: RestFormat,
): { readonly text: string; readonly format: RestFormat } {
  const used = format === 'row' && canSendRows(inputs) ? 'row' : 'columnar';
  let s = '{';
  if (signatureName !== undefined) s += `"signature_name":${JSON.stringify(signatureName)},`;
  if (used === 'columnar') {
    // Always named, even for one input: a bare tensor would be ambiguous with a b64 value.
    s += `"inputs":{${inputs.map((t) => `${JSON.stringify(t.name)}:${tensorJson(t, false)}`).join(',')}}}`;
    return { text: s, format: used };
  }
  const columns = inputs.map((t) => ({ key: JSON.stringify(t.name), rows: tensorRowsJson(t, false) }));
  const batch = inputs[0]?.shape[0] ?? 0;
  const rows: string[] = [];
  for (let r = 0; r < batch; r++) rows.push(`{${columns.map((c) => `${c.key}:${c.rows[r]}`).join(',')}}`);
  return { text: `${s}"instances":[${rows.join(',')}]}`, format: used };
}

function canSendRows(inputs: readonly Tensor[]): boolean {
  const batch = inputs[0]?.shape[0];
  return batch !== undefined && batch > 0 && inputs.every((t) => t.shape.length > 0 && t.shape[0] === batch);
}

// ---- predict replies ------------------------------------------------------------

/**
 * TF's reply for `outputs`: "predictions" (rows) or "outputs" (columnar);
 * a single output's name is left out. Rows need every output to share
 * dimension 0, as in TF; when they do not, the client is told to use the
 * columnar layout.
 */
export function encodePredictResponse(outputs: readonly Tensor[], format: RestFormat): string {
  const b64 = (t: Tensor): boolean => t.name.endsWith(BYTES_SUFFIX);
  if (format === 'columnar') {
    if (outputs.length === 1) return `{"outputs":${tensorJson(outputs[0]!, b64(outputs[0]!))}}`;
    return `{"outputs":{${outputs.map((t) => `${JSON.stringify(t.name)}:${tensorJson(t, b64(t))}`).join(',')}}}`;
  }
  const batch = outputs[0]?.shape[0];
  for (const t of outputs) {
    if (t.shape.length === 0 || t.shape[0] !== batch) {
      throw invalidArgument(
        `the outputs cannot be returned as rows ('predictions'): output '${t.name}' has shape [${t.shape.join(',')}] ` +
          `but rows need every output to share dimension 0 (${batch ?? 'none'}); send the request in the columnar format ('inputs')`,
      );
    }
  }
  const columns = outputs.map((t) => ({ key: JSON.stringify(t.name), rows: tensorRowsJson(t, b64(t)) }));
  if (columns.length === 1) return `{"predictions":[${columns[0]!.rows.join(',')}]}`;
  const rows: string[] = [];
  for (let r = 0; r < (batch ?? 0); r++) rows.push(`{${columns.map((c) => `${c.key}:${c.rows[r]}`).join(',')}}`);
  return `{"predictions":[${rows.join(',')}]}`;
}

/** The output tensors of a :predict reply, typed by the signature's output metadata (TF REST returns every output). */
export function decodePredictResponse(body: Buffer, outputs: readonly TensorMetadata[], format: RestFormat): Tensor[] {
  const json = parseTfJson(body, 'the predict reply');
  if (!isJsonObject(json)) throw invalidArgument('the predict reply is not a JSON object');
  const key = format === 'row' ? 'predictions' : 'outputs';
  const payload = json[key];
  if (payload === undefined) throw invalidArgument(`the predict reply has no '${key}'`);
  const typeOf = (name: string): DataType => {
    const meta = outputs.find((t) => t.name === name);
    if (meta === undefined) throw invalidArgument(`the reply holds output '${name}', which the signature does not list`);
    const datatype = parseDataType(meta.datatype);
    if (datatype === undefined) throw invalidArgument(`output '${name}': TF type ${meta.datatype} has no KServe v2 datatype`);
    return datatype;
  };
  const tensor = (name: string, value: JsonValue): Tensor => tensorFromJson(name, value, typeOf(name), `output '${name}'`);
  const single = outputs.length === 1 ? outputs[0]!.name : undefined;

  if (format === 'columnar') {
    if (single !== undefined) return [tensor(single, payload)];
    if (!isJsonObject(payload)) throw invalidArgument("'outputs' is not an object of named outputs");
    return Object.entries(payload).map(([name, value]) => tensor(name, value));
  }
  if (!Array.isArray(payload)) throw invalidArgument("'predictions' is not a list");
  if (single !== undefined) return [tensor(single, payload)];
  const names = outputs.map((t) => t.name);
  const columns = new Map(names.map((n) => [n, [] as JsonValue[]]));
  payload.forEach((row: unknown, i) => {
    if (!isJsonObject(row)) throw invalidArgument(`prediction ${i} is not an object of named outputs`);
    for (const [name, value] of Object.entries(row)) {
      const column = columns.get(name);
      if (column === undefined) typeOf(name); // throws: not in the signature
      column?.push(value);
    }
  });
  return [...columns]
    .filter(([, rows]) => rows.length > 0)
    .map(([name, rows]) => {
      if (rows.length !== payload.length) throw invalidArgument(`output '${name}' is missing from some predictions`);
      return tensor(name, rows);
    });
}

// ---- metadata and status ------------------------------------------------------------

/** GET …/metadata as TF answers it: the SignatureDefMap inline under metadata.signature_def. */
export function encodeModelMetadataJson(meta: ModelMetadata, version: string): string {
  return JSON.stringify({
    model_spec: { name: meta.name, signature_name: '', version },
    metadata: { signature_def: signatureDefMapFor(meta) },
  });
}

/** The signatures and the served version of a GET …/metadata reply. */
export function decodeModelMetadataJson(body: Buffer): { readonly signatures: SignatureDefMapMessage; readonly version?: string } {
  const json = parseTfJson(body, 'the model metadata');
  if (!isJsonObject(json)) throw invalidArgument('the model metadata is not a JSON object');
  const metadata = json.metadata;
  const map = isJsonObject(metadata) ? metadata.signature_def : undefined;
  if (!isJsonObject(map) || (map.signature_def !== undefined && !isJsonObject(map.signature_def))) {
    throw invalidArgument("the model metadata has no 'metadata.signature_def.signature_def' map");
  }
  const version = servedVersion(json.model_spec);
  return { signatures: map as SignatureDefMapMessage, ...(version !== undefined ? { version } : {}) };
}

export function encodeModelStatusJson(statuses: readonly ModelVersionStatusMessage[]): string {
  return JSON.stringify({ model_version_status: statuses });
}

/** Whether a GET /v1/models/{m}[/versions/{v}] reply lists an AVAILABLE version. */
export function decodeModelStatusJson(body: Buffer): boolean {
  return readyFromStatus(parseTfJson(body, 'the model status'));
}
