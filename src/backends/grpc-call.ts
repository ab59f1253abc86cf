import * as grpc from '@grpc/grpc-js';
import { abortedError, GatewayError, codeFromGrpcStatus, unavailable } from '../core/errors.js';
import type { BackendKind, CallOptions } from './backend.js';
import type { CancelSignal } from '../core/cancel.js';

/**
 * One gRPC backend endpoint: a channel created once and every call
 * multiplexed over it, with what every gRPC adapter needs around a call: the
 * deadline, the caller's cancellation, the request id as metadata, and the
 * status mapped to a gateway code, telling "could not reach it" (UNAVAILABLE
 * from grpc-js itself) from a status the server sent.
 *
 * Calls fail fast (gRPC's default, waitForReady false): a dead endpoint
 * answers UNAVAILABLE at once instead of holding the call until its deadline,
 * which lets the caller try another endpoint.
 */

/** One rpc with its message types, resolved once from a service definition. */
export interface Rpc<Req, Res> {
  readonly path: string;
  readonly serialize: (request: Req) => Buffer;
  readonly deserialize: (bytes: Buffer) => Res;
}

export function rpcOf<Req, Res>(service: grpc.ServiceDefinition, serviceName: string, name: string): Rpc<Req, Res> {
  const method = service[name];
  if (!method) throw new Error(`${serviceName} has no rpc ${name}`);
  return { path: method.path, serialize: method.requestSerialize, deserialize: method.responseDeserialize };
}

export class GrpcEndpoint {
  readonly endpoint: string;
  private readonly client: grpc.Client;
  private closed = false;

  constructor(
    private readonly kind: BackendKind,
    endpoint: string,
    maxMessageBytes: number,
  ) {
    this.endpoint = endpoint;
    this.client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
      // Pings only while calls are in flight: servers built on gRPC core send
      // GOAWAY to clients that ping idle connections too often.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 0,
      // A restarted backend is retried within seconds, not gRPC's default two minutes.
      'grpc.max_reconnect_backoff_ms': 10_000,
      'grpc.max_send_message_length': maxMessageBytes,
      'grpc.max_receive_message_length': maxMessageBytes,
    });
  }

  call<Req, Res>(method: Rpc<Req, Res>, request: Req, opts: CallOptions): Promise<Res> {
    if (this.closed) return Promise.reject(unavailable(`backend ${this.kind} ${this.endpoint} is closed`));
    if (opts.signal?.aborted) return Promise.reject(this.cancelled(undefined, opts.signal));
    const metadata = new grpc.Metadata();
    if (opts.requestId) metadata.set('x-request-id', opts.requestId);
    if (opts.traceparent !== undefined) metadata.set('traceparent', opts.traceparent);
    return new Promise<Res>((resolve, reject) => {
      let sawHeaders = false;
      const onAbort = (): void => call.cancel();
      const call = this.client.makeUnaryRequest(
        method.path,
        method.serialize,
        method.deserialize,
        request,
        metadata,
        { deadline: new Date(opts.deadline) },
        (err, value) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(this.toGatewayError(err, sawHeaders, opts.signal));
          else if (value === undefined) reject(new GatewayError('INTERNAL', `backend ${this.kind} ${this.endpoint} sent no reply`));
          else resolve(value);
        },
      );
      call.on('metadata', () => {
        sawHeaders = true;
      });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * A server-streaming call: each reply as it arrives. The deadline and the
   * caller's cancellation cover the whole stream; leaving the loop early
   * cancels the call. Errors are mapped as for call().
   */
  serverStream<Req, Res>(method: Rpc<Req, Res>, request: Req, opts: CallOptions): AsyncGenerator<Res> {
    return this.readStream(opts, (metadata, options) =>
      this.client.makeServerStreamRequest(method.path, method.serialize, method.deserialize, request, metadata, options),
    );
  }

  /**
   * A bidirectional call used as a request and its stream of replies: the one
   * request is written and the sending side closed at once (the server ends
   * the stream when it has answered), then each reply as it arrives. Deadline,
   * cancellation, early exit and errors as for serverStream().
   */
  bidiStream<Req, Res>(method: Rpc<Req, Res>, request: Req, opts: CallOptions): AsyncGenerator<Res> {
    return this.readStream(opts, (metadata, options) => {
      const call = this.client.makeBidiStreamRequest(method.path, method.serialize, method.deserialize, metadata, options);
      call.write(request);
      call.end();
      return call;
    });
  }

  /** Opens a streaming call (when the generator is first pulled) and yields its replies; see serverStream(). */
  private async *readStream<Res>(
    opts: CallOptions,
    open: (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<Res> | grpc.ClientDuplexStream<unknown, Res>,
  ): AsyncGenerator<Res> {
    if (this.closed) throw unavailable(`backend ${this.kind} ${this.endpoint} is closed`);
    if (opts.signal?.aborted) throw this.cancelled(undefined, opts.signal);
    const metadata = new grpc.Metadata();
    if (opts.requestId) metadata.set('x-request-id', opts.requestId);
    if (opts.traceparent !== undefined) metadata.set('traceparent', opts.traceparent);
    const call = open(metadata, { deadline: new Date(opts.deadline) });
    let sawHeaders = false;
    call.on('metadata', () => {
      sawHeaders = true;
    });
    const onAbort = (): void => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const message of call as AsyncIterable<Res>) yield message;
    } catch (err) {
      if (!isServiceError(err)) throw err;
      throw this.toGatewayError(err, sawHeaders, opts.signal);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      call.on('error', () => {}); // the CANCELLED status of an early exit is expected, not an unhandled error
      call.cancel(); // nothing to do after the end; stops the stream when the reader leaves early
    }
  }

  /** A reply the codec rejects is the backend's fault, not the client's, so it is not passed on as INVALID_ARGUMENT. */
  decodeReply<T>(decode: () => T): T {
    try {
      return decode();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new GatewayError('INTERNAL', `backend ${this.kind} ${this.endpoint} sent a malformed reply: ${message}`, {
        cause: err,
      });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  private toGatewayError(err: grpc.ServiceError, sawHeaders: boolean, signal: CancelSignal | undefined): GatewayError {
    const aborted = signal?.aborted === true;
    if (aborted && err.code === grpc.status.CANCELLED) return this.cancelled(err, signal);
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      return new GatewayError('DEADLINE_EXCEEDED', `backend ${this.endpoint} did not answer within the deadline`, {
        cause: err,
      });
    }
    if (err.code === grpc.status.UNAVAILABLE && !fromServer(err, sawHeaders)) {
      // Marked as a connection failure: no status came from the server, so routing may try another target.
      return new GatewayError('UNAVAILABLE', `backend ${this.kind} ${this.endpoint} unreachable: ${err.details}`, {
        cause: err,
        transport: 'connect',
      });
    }
    const code = codeFromGrpcStatus(err.code);
    return new GatewayError(code, err.details || `backend ${this.kind} ${this.endpoint} answered ${code}`, { cause: err });
  }

  /** The caller's reason when it gives one (a shutdown answers UNAVAILABLE), else CANCELLED. */
  private cancelled(cause?: unknown, signal?: CancelSignal): GatewayError {
    return abortedError(signal, `call to backend ${this.kind} ${this.endpoint} was cancelled`, cause);
  }
}

/**
 * Whether the server sent this status: a server's status comes after its
 * response headers, or in a trailers-only response that carries content-type.
 * grpc-js's own failures (no connection, connection dropped) have neither.
 */
function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'metadata' in err;
}

function fromServer(err: grpc.ServiceError, sawHeaders: boolean): boolean {
  return sawHeaders || err.metadata.get('content-type').length > 0;
}
