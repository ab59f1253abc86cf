// gRPC plumbing the references share; each server keeps its own services and its own error-to-status mapping.
import * as grpc from '@grpc/grpc-js';

/**
 * proto-loader options for every reference: field names as in the .proto, int64 fields as decimal strings
 * (exact, unlike a double), enums as names, bytes as Buffers, and unset fields absent rather than defaulted,
 * so a handler can tell "not sent" from "sent as zero".
 */
export const PROTO_LOAD_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true } as const;

/**
 * Returns a `unary` wrapper for one server: it runs a handler (sync or async) and answers a thrown error with
 * the status codeOf picks, the error's message as details.
 */
export function unaryCalls(codeOf: (err: unknown) => grpc.status) {
  const toStatus = (err: unknown): grpc.ServerErrorResponse => {
    const error = err instanceof Error ? err : new Error(String(err));
    return Object.assign(error, { code: codeOf(err), details: error.message });
  };
  return <Req, Res>(fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Res | Promise<Res>): grpc.handleUnaryCall<Req, Res> => (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then((res) => callback(null, res), (err: unknown) => callback(toStatus(err)));
  };
}
