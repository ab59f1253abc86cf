import type * as grpc from '@grpc/grpc-js';
import { AUTHENTICATED, OPEN, type AccessControl, type AccessRule } from './access-control.js';
import type { Principal } from './principal.js';

/** How an rpc's rule is read from its request message. */
type RpcRule = AccessRule | ((request: unknown) => AccessRule);

const field = (value: unknown): string => (typeof value === 'string' ? value : '');
const get = (request: unknown, key: string): unknown =>
  typeof request === 'object' && request !== null ? (request as Record<string, unknown>)[key] : undefined;
const modelRule = (infer: boolean, nameOf: (request: unknown) => unknown) => (request: unknown): AccessRule => ({
  kind: 'model',
  model: field(nameOf(request)),
  infer,
});
const specName = (request: unknown): unknown => get(get(request, 'model_spec'), 'name');

/**
 * Every gRPC method the gateway serves, by the name its handler reports
 * (unaryHandler's `rpc`): health and server metadata are open; the others
 * need a credential, and one whose scope holds the model the message names.
 * ModelStreamInfer is authenticated when the stream opens and each message
 * checked on its own (streamMessageGate). A method missing here needs a '*'
 * scope: a new rpc is closed until it is given its rule.
 */
const RPC_RULES: ReadonlyMap<string, RpcRule> = new Map<string, RpcRule>([
  ['ServerLive', OPEN],
  ['ServerReady', OPEN],
  ['ServerMetadata', OPEN],
  ['Ping', OPEN],
  ['ModelReady', modelRule(false, (r) => get(r, 'name'))],
  ['ModelMetadata', modelRule(false, (r) => get(r, 'name'))],
  ['ModelInfer', modelRule(true, (r) => get(r, 'model_name'))],
  ['RepositoryIndex', AUTHENTICATED],
  ['ModelStreamInfer', AUTHENTICATED],
  ['tensorflow.serving.PredictionService/Predict', modelRule(true, specName)],
  ['tensorflow.serving.PredictionService/GetModelMetadata', modelRule(false, specName)],
  ['tensorflow.serving.ModelService/GetModelStatus', modelRule(false, specName)],
  ['Predictions', modelRule(true, (r) => get(r, 'model_name'))],
  ['StreamPredictions', modelRule(true, (r) => get(r, 'model_name'))],
]);

export function grpcAccessRule(rpc: string, request: unknown): AccessRule {
  const rule = RPC_RULES.get(rpc) ?? { kind: 'all_models', what: `call ${rpc}` };
  return typeof rule === 'function' ? rule(request) : rule;
}

/** The first text value of a metadata key (credentials are never -bin). */
function metadataHeader(metadata: grpc.Metadata): (name: string) => string | undefined {
  return (name) => {
    const value = metadata.get(name)[0];
    return typeof value === 'string' ? value : undefined;
  };
}

/**
 * The access check of one call: resolves with its principal (undefined for
 * open methods and without access control), or rejects with the
 * GatewayError to answer (UNAUTHENTICATED, PERMISSION_DENIED,
 * RESOURCE_EXHAUSTED with the pushback).
 */
export function admitGrpcCall(
  access: AccessControl | undefined,
  rpc: string,
  call: { readonly metadata: grpc.Metadata },
  request?: unknown,
): Promise<Principal | undefined> {
  if (access === undefined) return Promise.resolve(undefined);
  const rule = grpcAccessRule(rpc, request);
  if (rule.kind === 'open') return Promise.resolve(undefined);
  return access.admit(rule, metadataHeader(call.metadata));
}

/**
 * For each message of a ModelStreamInfer stream (whose credential was checked
 * when it opened): throws PERMISSION_DENIED at once when the message's model
 * is outside the scope (before the model is even resolved), else returns the
 * rate-limit check of that inference. Undefined without access control.
 */
export function streamMessageGate(access: AccessControl | undefined, principal: Principal | undefined): ((model: string) => Promise<void>) | undefined {
  if (access === undefined) return undefined;
  return (model) => {
    access.checkModel(principal, model);
    return access.limit(principal, model);
  };
}

/** The parts of `start()` once `gate` has resolved (its rejection is the first and only step). */
export async function* afterGate<T>(gate: Promise<void>, start: () => AsyncIterable<T>): AsyncGenerator<T> {
  await gate;
  yield* start();
}
