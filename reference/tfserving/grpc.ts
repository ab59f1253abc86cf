// TF Serving's gRPC API (--port, 8500) over @grpc/grpc-js: PredictionService.Predict/GetModelMetadata and
// ModelService.GetModelStatus, from the protos under protos/tensorflow. Like real TF Serving it accepts inputs
// as tensor_content or typed *_val fields (with TF's broadcast/pad rule) and answers with typed *_val fields.
import { Buffer } from 'node:buffer';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { PROTO_LOAD_OPTIONS, unaryCalls } from '../common/grpc.js';
import {
  VAL_FIELD, castInt, elementCount, elementSize, fromLittleEndian, isDType, toLittleEndian,
  type DType, type Element, type Tensor, type ValField,
} from './dtypes.js';
import {
  ServingError, modelStatus, predict, resolveServable,
  type ErrorCode, type InferHook, type ServableRequest, type TensorSpec,
} from './models.js';

const INCLUDE_ROOT = fileURLToPath(new URL('../../protos/tensorflow/', import.meta.url));
const MAX_MESSAGE_BYTES = 2 ** 31 - 1; // TF Serving allows INT32_MAX
const SIGNATURE_DEF_MAP_URL = 'type.googleapis.com/tensorflow.serving.SignatureDefMap';

// See PROTO_LOAD_OPTIONS for how fields arrive (int64 as decimal strings, enums as names, bytes as Buffers).
const definition = protoLoader.loadSync(
  ['tensorflow_serving/apis/prediction_service.proto', 'tensorflow_serving/apis/model_service.proto'],
  { ...PROTO_LOAD_OPTIONS, includeDirs: [INCLUDE_ROOT] },
);
const PREDICTION_SERVICE = definition['tensorflow.serving.PredictionService'] as grpc.ServiceDefinition;
const MODEL_SERVICE = definition['tensorflow.serving.ModelService'] as grpc.ServiceDefinition;

// The Any in GetModelMetadataResponse holds serialized bytes, which proto-loader cannot produce for a type that
// is not an rpc argument, so protobufjs encodes the SignatureDefMap itself.
const protoRoot = new protobuf.Root();
protoRoot.resolvePath = (_origin, target) => INCLUDE_ROOT + target;
protoRoot.loadSync('tensorflow_serving/apis/get_model_metadata.proto', { keepCase: true });
const SIGNATURE_DEF_MAP = protoRoot.lookupType('tensorflow.serving.SignatureDefMap');

const GRPC_STATUS: Readonly<Record<ErrorCode, grpc.status>> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  NOT_FOUND: grpc.status.NOT_FOUND,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
};

export interface GrpcOptions {
  /** 'typed' (TF's default AsProtoField) or 'tensor_content' (AsProtoTensorContent); strings always use string_val. */
  responseForm: 'typed' | 'tensor_content';
  /** Typed outputs whose elements are all equal are sent as one element (TF's version-0 broadcast form). */
  broadcastScalars: boolean;
}

// Messages as proto-loader decodes them (defaults: false, so unset fields and empty repeated fields are absent).
interface ModelSpecMsg {
  name?: string;
  version?: { value?: string } | null;
  version_label?: string;
  signature_name?: string;
}
interface TensorProtoMsg {
  dtype?: string | number;
  tensor_shape?: { dim?: { size?: string; name?: string }[]; unknown_rank?: boolean } | null;
  version_number?: number;
  tensor_content?: Buffer;
  float_val?: number[];
  double_val?: number[];
  int_val?: number[];
  int64_val?: string[];
  bool_val?: boolean[];
  string_val?: Buffer[];
  half_val?: number[];
  uint32_val?: number[];
  uint64_val?: string[];
  scomplex_val?: number[];
  dcomplex_val?: number[];
  resource_handle_val?: unknown[];
  variant_val?: unknown[];
  float8_val?: Buffer;
}
interface PredictRequestMsg {
  model_spec?: ModelSpecMsg | null;
  inputs?: Record<string, TensorProtoMsg>;
  output_filter?: string[];
}

export function createGrpcServer(onInfer: InferHook, options: GrpcOptions): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  server.addService(PREDICTION_SERVICE, {
    Predict: unary(async (req: PredictRequestMsg) => {
      await onInfer();
      return predictRpc(req, options);
    }),
    GetModelMetadata: unary(getModelMetadata),
  });
  server.addService(MODEL_SERVICE, {
    GetModelStatus: unary((req: { model_spec?: ModelSpecMsg | null }) => ({
      model_version_status: modelStatus(servableOf(req.model_spec)).map((s) => ({
        version: String(s.version),
        state: s.state,
        status: { error_code: 'OK', error_message: '' },
      })),
    })),
  });
  return server;
}

const unary = unaryCalls((err) => (err instanceof ServingError ? GRPC_STATUS[err.code] : grpc.status.INTERNAL));

const invalidArg = (message: string): ServingError => new ServingError('INVALID_ARGUMENT', message);

function servableOf(spec: ModelSpecMsg | null | undefined): ServableRequest {
  if (!spec) throw invalidArg('Missing ModelSpec');
  const name = spec.name ?? '';
  if (spec.version != null) return { name, version: spec.version.value ?? '0' }; // Int64Value{} is version 0
  return spec.version_label === undefined ? { name } : { name, label: spec.version_label };
}

function modelSpecMsg(name: string, version: number, signatureName: string): object {
  return { name, version: { value: String(version) }, signature_name: signatureName };
}

function predictRpc(req: PredictRequestMsg, options: GrpcOptions): object {
  const servable = servableOf(req.model_spec);
  resolveServable(servable); // model errors come before input errors, as in TF
  const inputs = new Map(Object.entries(req.inputs ?? {}).map(([alias, t]) => [alias, decodeTensor(alias, t)]));
  const result = predict({ servable, signatureName: req.model_spec?.signature_name ?? '', inputs, outputFilter: req.output_filter ?? [] });
  return {
    outputs: Object.fromEntries(result.outputs.map((o) => [o.alias, encodeTensor(o.tensor, options)])),
    model_spec: modelSpecMsg(result.modelName, result.version, result.signatureName),
  };
}

const ZERO: Readonly<Record<ValField, Element>> = {
  float_val: 0, double_val: 0, int_val: 0, int64_val: 0n, bool_val: false, string_val: Buffer.alloc(0),
  half_val: 0, uint32_val: 0, uint64_val: 0n,
};
const ALL_VALUE_FIELDS = [
  'float_val', 'double_val', 'int_val', 'int64_val', 'bool_val', 'string_val', 'half_val', 'uint32_val', 'uint64_val',
  'scomplex_val', 'dcomplex_val', 'resource_handle_val', 'variant_val', 'float8_val',
] as const;

/** Tensor::FromProto: tensor_content, or the dtype's *_val field broadcast/padded with its last element. */
function decodeTensor(alias: string, msg: TensorProtoMsg): Tensor {
  const fail = (why: string): never => {
    throw invalidArg(`tensor parsing error: ${alias}: ${why}`);
  };
  const dtype = msg.dtype ?? 'DT_INVALID';
  if (!isDType(dtype)) return fail(`unsupported dtype ${String(dtype)}`);
  if (msg.tensor_shape?.unknown_rank) fail('the shape has unknown rank');
  const shape = (msg.tensor_shape?.dim ?? []).map((d) => Number(d.size ?? '0'));
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`invalid shape [${shape.join(',')}]`);
  const count = elementCount(shape);

  const content = msg.tensor_content ?? Buffer.alloc(0);
  if (content.length > 0) {
    const size = elementSize(dtype);
    if (dtype === 'DT_STRING' || size === undefined) return fail('DT_STRING cannot use tensor_content');
    if (content.length !== count * size) fail(`tensor_content holds ${content.length} bytes, shape [${shape.join(',')}] needs ${count * size}`);
    return { dtype, shape, values: fromLittleEndian(dtype, content) };
  }

  // TF reads only the dtype's own field and ignores others; we refuse them, so a client's mistake shows up.
  const field = VAL_FIELD[dtype];
  const stray = ALL_VALUE_FIELDS.filter((f) => f !== field && (msg[f]?.length ?? 0) > 0);
  if (stray.length > 0) fail(`a ${dtype} tensor carries values in ${stray.join(', ')} instead of ${field}`);
  const given = typedValues(dtype, field, msg);
  if (given.length > count) fail(`${field} holds ${given.length} values, shape [${shape.join(',')}] needs ${count}`);
  const last = given.length > 0 ? given[given.length - 1] : ZERO[field];
  const values = given.concat(Array.from({ length: count - given.length }, () => last as Element));
  return { dtype, shape, values };
}

function typedValues(dtype: DType, field: ValField, msg: TensorProtoMsg): Element[] {
  switch (field) {
    case 'int64_val': case 'uint64_val': return (msg[field] ?? []).map((s) => BigInt(s));
    case 'int_val': return (msg.int_val ?? []).map((v) => castInt(dtype, v));
    case 'half_val': return (msg.half_val ?? []).map((v) => v & 0xffff); // bit patterns in the low 16 bits
    default: return [...(msg[field] ?? [])];
  }
}

function encodeTensor(t: Tensor, options: GrpcOptions): TensorProtoMsg {
  const header: TensorProtoMsg = { dtype: t.dtype, tensor_shape: { dim: t.shape.map((size) => ({ size: String(size) })) } };
  if (options.responseForm === 'tensor_content' && t.dtype !== 'DT_STRING') {
    return { ...header, tensor_content: toLittleEndian(t.dtype, t.values) };
  }
  const field = VAL_FIELD[t.dtype];
  const first = t.values[0];
  const allSame = t.values.length > 1 && t.values.every((v) => (Buffer.isBuffer(v) && Buffer.isBuffer(first) ? v.equals(first) : Object.is(v, first)));
  const values = options.broadcastScalars && allSame ? t.values.slice(0, 1) : t.values;
  const wire = field === 'int64_val' || field === 'uint64_val' ? values.map(String) : values;
  return { ...header, [field]: wire };
}

function tensorInfo(spec: TensorSpec): object {
  return { name: `${spec.tensor}:0`, dtype: spec.dtype, tensor_shape: { dim: spec.shape.map((size) => ({ size })) } };
}

function getModelMetadata(req: { model_spec?: ModelSpecMsg | null; metadata_field?: string[] }): object {
  const fields = req.metadata_field ?? [];
  if (fields.length === 0) throw invalidArg('GetModelMetadataRequest must specify at least one metadata_field');
  const unsupported = fields.find((f) => f !== 'signature_def');
  if (unsupported !== undefined) throw invalidArg(`Metadata field ${unsupported} is not supported`);
  const { model, version } = resolveServable(servableOf(req.model_spec));
  const signatureDef = Object.fromEntries(Object.entries(model.signatures).map(([name, sig]) => [name, {
    inputs: Object.fromEntries(sig.inputs.map((s) => [s.alias, tensorInfo(s)])),
    outputs: Object.fromEntries(sig.outputs.map((s) => [s.alias, tensorInfo(s)])),
    method_name: sig.methodName,
  }]));
  const value = SIGNATURE_DEF_MAP.encode(SIGNATURE_DEF_MAP.fromObject({ signature_def: signatureDef })).finish();
  return {
    model_spec: modelSpecMsg(model.name, version, ''),
    metadata: { signature_def: { type_url: SIGNATURE_DEF_MAP_URL, value: Buffer.from(value) } },
  };
}
