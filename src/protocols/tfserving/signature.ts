import { GatewayError, invalidArgument } from '../../core/errors.js';
import type { ModelMetadata, TensorMetadata } from '../../core/inference.js';
import { tfDataTypeOfName, v2DataTypeOrTfName } from './datatypes.js';
import type {
  ModelSpecMessage,
  ModelVersionStatusMessage,
  SignatureDefMapMessage,
  SignatureDefMessage,
  TensorInfoMessage,
} from './grpc-proto.js';
import { dimSize } from './tensor-proto.js';

/**
 * What TF Serving's REST and gRPC APIs share besides tensors: how a model
 * version or label is addressed (ModelSpec), SignatureDefs as v2 model
 * metadata and back, and model version status as readiness and back. The
 * REST JSON of these messages is their proto3 JSON, so one set of functions
 * reads and writes both (int64 as strings, enums as names).
 */

export const DEFAULT_SIGNATURE = 'serving_default';
export const PREDICT_METHOD = 'tensorflow/serving/predict';
/**
 * A request parameter naming the SignatureDef to call: set by the TF Serving
 * front door when its client asked for a signature (and honoured from any v2
 * client); the TF Serving adapters consume it.
 */
export const SIGNATURE_PARAMETER = 'signature_name';
/** The v2 `platform` of a model served by TF Serving. */
export const TF_PLATFORM = 'tensorflow_serving';

/** TF versions are int64s; any other version string a gateway client gives is a label (stable, canary). */
const NUMERIC_VERSION = /^\d{1,19}$/;

export function isNumericVersion(version: string): boolean {
  return NUMERIC_VERSION.test(version);
}

/** A ModelSpec for a gateway version string: '' none, digits a version, anything else a label. */
export function modelSpecFor(model: string, version: string, signatureName?: string): ModelSpecMessage {
  const spec: ModelSpecMessage = { name: model };
  if (isNumericVersion(version)) spec.version = { value: version };
  else if (version !== '') spec.version_label = version;
  if (signatureName !== undefined) spec.signature_name = signatureName;
  return spec;
}

/** The version a client's ModelSpec asks for, as a gateway version string: digits, a label, or '' for the latest. */
export function versionOfModelSpec(spec: ModelSpecMessage | null | undefined): string {
  if (spec === undefined || spec === null) return '';
  if (spec.version !== undefined && spec.version !== null) return int64Text(spec.version.value ?? '0', 'model_spec.version');
  return spec.version_label ?? '';
}

/** The version a reply's ModelSpec names (`{value}` from gRPC, a bare string in REST JSON), or undefined. */
export function servedVersion(spec: unknown): string | undefined {
  if (typeof spec !== 'object' || spec === null) return undefined;
  const v: unknown = (spec as { version?: unknown }).version;
  const value: unknown = typeof v === 'object' && v !== null ? (v as { value?: unknown }).value ?? '0' : v;
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

function int64Text(value: string | number, what: string): string {
  const text = String(value);
  if (!/^-?\d{1,20}$/.test(text)) throw invalidArgument(`${what} must be an integer, got ${text}`);
  return text;
}

// ---- signatures <-> metadata ------------------------------------------------

/**
 * One signature of a SignatureDefMap. A missing one is the caller's
 * FAILED_PRECONDITION (TF's own code for an unknown signature key), naming the
 * ones there are.
 */
export function findSignature(map: SignatureDefMapMessage, signatureName: string, model: string): SignatureDefMessage {
  const defs = map.signature_def ?? {};
  const sig = Object.hasOwn(defs, signatureName) ? defs[signatureName] : undefined;
  if (sig === undefined) {
    throw new GatewayError(
      'FAILED_PRECONDITION',
      `model '${model}' has no signature '${signatureName}' (its signatures: ${Object.keys(defs).join(', ') || 'none'})`,
    );
  }
  return sig;
}

/** v2 metadata for a signature; a malformed TensorInfo is INVALID_ARGUMENT (an adapter makes it INTERNAL). */
export function signatureToMetadata(
  sig: SignatureDefMessage,
  signatureName: string,
  model: string,
  versions: readonly string[],
): ModelMetadata {
  if (typeof sig !== 'object' || sig === null) throw invalidArgument(`signature '${signatureName}' is not a SignatureDef`);
  return {
    name: model,
    versions,
    platform: TF_PLATFORM,
    inputs: tensorInfos(sig.inputs, `signature '${signatureName}' inputs`),
    outputs: tensorInfos(sig.outputs, `signature '${signatureName}' outputs`),
  };
}

function tensorInfos(infos: SignatureDefMessage['inputs'], what: string): TensorMetadata[] {
  if (infos === undefined || infos === null) return [];
  if (typeof infos !== 'object' || Array.isArray(infos)) throw invalidArgument(`${what} must be a map`);
  return Object.entries(infos).map(([name, info]) => {
    if (typeof info !== 'object' || info === null) throw invalidArgument(`${what}: '${name}' is not a TensorInfo`);
    return { name, datatype: v2DataTypeOrTfName(info.dtype), shape: metadataShape(info, `${what}: '${name}'`) };
  });
}

/** Signature shapes may hold -1; an unknown rank becomes [-1], the closest v2 can say. */
function metadataShape(info: TensorInfoMessage, what: string): number[] {
  const shape = info.tensor_shape;
  if (shape === undefined || shape === null) return [];
  if (shape.unknown_rank === true) return [-1];
  return (shape.dim ?? []).map((d) => {
    const size = dimSize(d);
    if (size === undefined || size < -1) throw invalidArgument(`${what}: tensor_shape holds an invalid size`);
    return size;
  });
}

/** A SignatureDefMap with one `serving_default` signature describing v2 metadata: what the front door shows TF clients. */
export function signatureDefMapFor(meta: ModelMetadata): SignatureDefMapMessage {
  return {
    signature_def: {
      [DEFAULT_SIGNATURE]: {
        inputs: Object.fromEntries(meta.inputs.map((t) => [t.name, tensorInfoFor(t)])),
        outputs: Object.fromEntries(meta.outputs.map((t) => [t.name, tensorInfoFor(t)])),
        method_name: PREDICT_METHOD,
      },
    },
  };
}

function tensorInfoFor(t: TensorMetadata): TensorInfoMessage {
  return {
    name: t.name,
    dtype: tfDataTypeOfName(t.datatype),
    tensor_shape: { dim: t.shape.map((size) => ({ size: String(size) })), unknown_rank: false },
  };
}

/**
 * The version a front door reports in a reply's ModelSpec: the one asked for
 * when it is a number, else (latest, or a label) the newest the metadata lists.
 */
export function reportedVersion(asked: string, versions: readonly string[]): string {
  if (isNumericVersion(asked)) return asked;
  const numeric = versions.filter(isNumericVersion).map(BigInt);
  if (numeric.length === 0) return '';
  return numeric.reduce((a, b) => (b > a ? b : a)).toString();
}

// ---- version status <-> readiness -----------------------------------------------

const AVAILABLE = 'AVAILABLE';
const AVAILABLE_NUMBER = 30;

/** True when a GetModelStatus reply lists a version in state AVAILABLE (a reply for one version lists only it). */
export function readyFromStatus(reply: unknown): boolean {
  if (typeof reply !== 'object' || reply === null) throw invalidArgument('the model status is not an object');
  const list: unknown = (reply as { model_version_status?: unknown }).model_version_status ?? [];
  if (!Array.isArray(list)) throw invalidArgument("the model status: 'model_version_status' must be a list");
  return list.some((s: unknown) => {
    const state = typeof s === 'object' && s !== null ? (s as { state?: unknown }).state : undefined;
    return state === AVAILABLE || state === AVAILABLE_NUMBER;
  });
}

/**
 * One ModelVersionStatus for the front door. A ready model is AVAILABLE; one
 * that is not has no truthful TF state (loading? failed?), so it is UNKNOWN
 * with an UNAVAILABLE status saying so.
 */
export function versionStatus(version: string, ready: boolean, model: string): ModelVersionStatusMessage {
  return {
    // TF versions are int64s; a backend version that is not one (TorchServe's "1.0") is reported as 0.
    version: isNumericVersion(version) ? version : '0',
    state: ready ? AVAILABLE : 'UNKNOWN',
    status: ready
      ? { error_code: 'OK', error_message: '' }
      : { error_code: 'UNAVAILABLE', error_message: `model '${model}' version ${version || 'latest'} is not ready` },
  };
}
