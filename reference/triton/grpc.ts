// GRPCInferenceService front end over @grpc/grpc-js. Like real Triton it accepts typed `contents` or
// `raw_input_contents`, and always answers with `raw_output_contents`.
import { Buffer } from 'node:buffer';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_LOAD_OPTIONS, unaryCalls } from '../common/grpc.js';
import {
  SERVER_METADATA, TritonError, infer, inferDecoupled, modelMetadata, refuseDecoupled, repositoryIndex, resolveModel,
  resolveServable, type ErrorCode, type InferHook, type InferRequest, type InferResult, type RequestedOutput,
} from './models.js';
import { encodeElements, isDatatype, type Datatype, type Element } from './tensor.js';

const PROTO_PATH = fileURLToPath(new URL('../../protos/inference/grpc_service.proto', import.meta.url));
const MAX_MESSAGE_BYTES = 2 ** 31 - 1; // Triton allows INT32_MAX

// Loaded once at start-up; see PROTO_LOAD_OPTIONS for how fields arrive.
const definition = protoLoader.loadSync(PROTO_PATH, PROTO_LOAD_OPTIONS);
const SERVICE = definition['inference.GRPCInferenceService'] as grpc.ServiceDefinition;

const GRPC_STATUS: Readonly<Record<ErrorCode, grpc.status>> = {
  INVALID_ARG: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  UNSUPPORTED: grpc.status.UNIMPLEMENTED,
  INTERNAL: grpc.status.INTERNAL,
};

// Messages as proto-loader decodes them (defaults: false, so unset fields and empty repeated fields are absent).
interface InferParameterMsg {
  parameter_choice?: string;
  bool_param?: boolean;
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
}
interface ContentsMsg {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: string[];
  uint_contents?: number[];
  uint64_contents?: string[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}
interface InputMsg {
  name?: string;
  datatype?: string;
  shape?: string[];
  contents?: ContentsMsg | null;
}
interface ModelInferRequestMsg {
  model_name?: string;
  model_version?: string;
  id?: string;
  inputs?: InputMsg[];
  parameters?: Record<string, InferParameterMsg>;
  outputs?: { name?: string; parameters?: Record<string, InferParameterMsg> }[];
  raw_input_contents?: Buffer[];
}
interface ModelInferResponseMsg {
  model_name: string;
  model_version: string;
  id: string;
  /** Set on stream responses only: `triton_final_response`. */
  parameters?: Record<string, { bool_param: boolean }>;
  outputs: { name: string; datatype: string; shape: number[] }[];
  raw_output_contents: Buffer[];
}
type StreamResponseMsg = { infer_response: ModelInferResponseMsg } | { error_message: string };
interface ModelRefMsg {
  name?: string;
  version?: string;
}

/** The one InferTensorContents field that carries each datatype; FP16 and BF16 have none and must go raw. */
const CONTENTS_FIELD: Readonly<Partial<Record<Datatype, keyof ContentsMsg>>> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents', INT16: 'int_contents', INT32: 'int_contents', INT64: 'int64_contents',
  UINT8: 'uint_contents', UINT16: 'uint_contents', UINT32: 'uint_contents', UINT64: 'uint64_contents',
  FP32: 'fp32_contents', FP64: 'fp64_contents', BYTES: 'bytes_contents',
};

const invalidArg = (message: string): TritonError => new TritonError('INVALID_ARG', message);

/** Hears each ModelStreamInfer call open and close (cancelled or ended), for stats. */
export interface StreamActivity {
  opened(): void;
  closed(): void;
}

export function createGrpcServer(onInfer: InferHook, streams?: StreamActivity): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  const implementation: grpc.UntypedServiceImplementation = {
    ServerLive: unary(() => ({ live: true })),
    ServerReady: unary(() => ({ ready: true })),
    ModelReady: unary((req: ModelRefMsg) => ({ ready: resolveModel(req.name ?? '', req.version || undefined).model.ready })),
    ServerMetadata: unary(() => SERVER_METADATA),
    ModelMetadata: unary((req: ModelRefMsg) => modelMetadata(req.name ?? '', req.version || undefined)),
    ModelInfer: unary((req: ModelInferRequestMsg, call) => modelInfer(onInfer, req, call.metadata)),
    ModelStreamInfer: (call: grpc.ServerDuplexStream<ModelInferRequestMsg, StreamResponseMsg>) => streamInfer(onInfer, call, streams),
    RepositoryIndex: unary((req: { ready?: boolean }) => ({ models: repositoryIndex(req.ready ?? false) })),
  };
  server.addService(SERVICE, implementation);
  return server;
}

/** Metadata as one string per key (repeated values joined with ", ", binary ones base64). */
function metadataRecord(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    out[key] = values.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : v)).join(', ');
  }
  return out;
}

const unary = unaryCalls((err) => (err instanceof TritonError ? GRPC_STATUS[err.code] : grpc.status.INTERNAL));

async function modelInfer(onInfer: InferHook, req: ModelInferRequestMsg, metadata: grpc.Metadata): Promise<ModelInferResponseMsg> {
  await onInfer(metadataRecord(metadata));
  // Model errors come before input errors; decoupled models need the stream.
  refuseDecoupled(resolveServable(req.model_name ?? '', req.model_version || undefined).model, 'ModelInfer RPC');
  return encodeInferResponse(infer(decodeInferRequest(req)), req.id ?? '');
}

/**
 * Answers each request in order (one at a time); a failed request gets error_message and the stream goes on. As
 * in Triton, every response carries `triton_final_response`: a model's one response is final; a decoupled model's
 * responses are not, and its final flag comes alone, as an empty response only when the request set
 * `triton_enable_empty_final_response`.
 */
function streamInfer(
  onInfer: InferHook, call: grpc.ServerDuplexStream<ModelInferRequestMsg, StreamResponseMsg>, streams?: StreamActivity,
): void {
  streams?.opened();
  const cancel = new AbortController(); // stops a decoupled model's pending responses
  let open = true;
  const closed = (): void => {
    cancel.abort();
    if (!open) return;
    open = false;
    streams?.closed();
  };
  let queue: Promise<void> = Promise.resolve();
  const reply = (message: StreamResponseMsg): void => {
    try {
      if (!call.cancelled) call.write(message);
    } catch {
      // the client went away mid-stream; nothing left to tell it
    }
  };
  call.on('data', (req: ModelInferRequestMsg) => {
    queue = queue.then(() =>
      streamAnswer(onInfer, req, reply, cancel.signal, call.metadata).catch((err: unknown) =>
        reply({ error_message: err instanceof Error ? err.message : String(err) })));
  });
  call.on('end', () => void queue.then(() => {
    if (!call.cancelled) call.end();
    closed();
  }));
  call.on('cancelled', closed);
  call.on('error', closed); // cancellation surfaces here too; the queue just drains into the void
}

const finalFlag = (final: boolean): Record<string, { bool_param: boolean }> => ({ triton_final_response: { bool_param: final } });

async function streamAnswer(
  onInfer: InferHook, req: ModelInferRequestMsg, reply: (message: StreamResponseMsg) => void, cancelled: AbortSignal,
  metadata: grpc.Metadata,
): Promise<void> {
  await onInfer(metadataRecord(metadata));
  const { model } = resolveServable(req.model_name ?? '', req.model_version || undefined);
  const emptyFinal = emptyFinalRequested(req);
  const id = req.id ?? '';
  if (!model.decoupled) {
    reply({ infer_response: { ...encodeInferResponse(infer(decodeInferRequest(req)), id), parameters: finalFlag(true) } });
    return;
  }
  const result = inferDecoupled(decodeInferRequest(req));
  for (const response of result.responses) {
    if (response.delayMs > 0) await delay(response.delayMs, undefined, { signal: cancelled }).catch(() => undefined);
    if (cancelled.aborted) return;
    const outputs = { modelName: result.modelName, modelVersion: result.modelVersion, outputs: response.outputs };
    reply({ infer_response: { ...encodeInferResponse(outputs, id), parameters: finalFlag(false) } });
  }
  if (emptyFinal) {
    reply({
      infer_response: {
        model_name: req.model_name ?? '', model_version: req.model_version ?? '', id,
        outputs: [], raw_output_contents: [], parameters: finalFlag(true),
      },
    });
  }
}

/** The request's `triton_enable_empty_final_response`, which Triton requires to be a bool parameter. */
function emptyFinalRequested(req: ModelInferRequestMsg): boolean {
  const p = req.parameters?.triton_enable_empty_final_response;
  if (p === undefined) return false;
  if (p.bool_param === undefined && p.parameter_choice !== 'bool_param') {
    throw invalidArg("invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param.");
  }
  return p.bool_param === true;
}

function decodeInferRequest(msg: ModelInferRequestMsg): InferRequest {
  const where = `for model '${msg.model_name ?? ''}'`;
  const inputs = msg.inputs ?? [];
  const raw = msg.raw_input_contents ?? [];
  if (raw.length > 0) {
    if (raw.length !== inputs.length) {
      throw invalidArg(`expected ${inputs.length} raw_input_contents (one per input) but got ${raw.length} ${where}`);
    }
    const typed = inputs.find((i) => i.contents != null);
    if (typed) {
      throw invalidArg(`contents field must not be specified when using raw_input_contents for '${typed.name ?? ''}' ${where}`);
    }
  }
  return {
    modelName: msg.model_name ?? '',
    modelVersion: msg.model_version || undefined,
    inputs: inputs.map((input, i) => {
      const name = input.name ?? '';
      if (!isDatatype(input.datatype)) throw invalidArg(`invalid datatype '${input.datatype ?? ''}' for input '${name}' ${where}`);
      const shape = (input.shape ?? []).map(Number);
      if (!shape.every(Number.isSafeInteger)) throw invalidArg(`shape of input '${name}' ${where} does not fit a safe integer`);
      const data = raw.length > 0 ? raw[i] ?? Buffer.alloc(0) : typedContents(name, input.datatype, input.contents ?? {}, where);
      return { name, datatype: input.datatype, shape, data };
    }),
    outputs: (msg.outputs ?? []).map(requestedOutput),
  };
}

function typedContents(name: string, datatype: Datatype, contents: ContentsMsg, where: string): Buffer {
  const present = (Object.keys(contents) as (keyof ContentsMsg)[]).filter((k) => (contents[k]?.length ?? 0) > 0);
  if (present.length === 0) return Buffer.alloc(0); // an empty tensor; any other shape fails the size check
  const field = CONTENTS_FIELD[datatype];
  if (!field) throw invalidArg(`${datatype} input '${name}' ${where} must be sent in raw_input_contents`);
  if (present.length > 1 || present[0] !== field) {
    throw invalidArg(`input '${name}' ${where} has datatype ${datatype}, whose data belongs in contents.${field}, but sets ${present.join(', ')}`);
  }
  // Protobuf's int64/uint64 arrive as decimal strings; everything else is already a JS value of the right kind.
  const values: readonly Element[] = field === 'int64_contents' || field === 'uint64_contents'
    ? (contents[field] ?? []).map((s) => BigInt(s))
    : (contents[field] ?? []);
  try {
    return encodeElements(datatype, values);
  } catch (err) {
    throw invalidArg(`invalid contents for input '${name}' ${where}: ${(err as Error).message}`);
  }
}

function requestedOutput(o: { name?: string; parameters?: Record<string, InferParameterMsg> }): RequestedOutput {
  const name = o.name ?? '';
  const p = o.parameters?.classification;
  if (!p) return { name };
  const k = p.int64_param ?? p.uint64_param;
  if (k === undefined) throw invalidArg(`'classification' of output '${name}' must be an int64 parameter`);
  return { name, classification: Number(k) };
}

function encodeInferResponse(result: InferResult, id: string): ModelInferResponseMsg {
  return {
    model_name: result.modelName,
    model_version: result.modelVersion,
    id,
    outputs: result.outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
    raw_output_contents: result.outputs.map((t) => t.data),
  };
}
