import type { CallOptions } from '../backends/backend.js';
import type { EndpointFilter } from '../backends/cluster.js';
import type { InferRequest, InferResponse } from '../core/inference.js';
import { childTraceparent, type TraceContext } from '../observability/trace-context.js';
import type { GuardContext } from '../resilience/resilient-backend.js';
import type { LeafNode, ModelRoute } from './route-tree.js';

/** What a backend call needs of its request: the resilience layer's context plus what goes on the wire. */
export interface LeafCallContext extends GuardContext {
  readonly requestId?: string;
  /** The request's trace: each backend call is sent as a new span of it. */
  readonly trace?: TraceContext;
}

/** Hears each backend call a request makes (routing's RouteState fits). */
export interface AttemptCounter {
  attempts: number;
}

/**
 * The backend call's options: the request's deadline capped by the leaf's
 * timeout (its inherited timeout_ms, itself capped by the backend's), the
 * model's settings, and the call's traceparent (a new span id per call, so
 * per attempt: this is called once for each).
 */
export function callOptions(route: ModelRoute, ctx: LeafCallContext): CallOptions {
  return {
    deadline: Math.min(ctx.deadline, Date.now() + route.timeoutMs),
    model: route.options,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.requestId !== undefined ? { requestId: ctx.requestId } : {}),
    ...(ctx.trace !== undefined ? { traceparent: childTraceparent(ctx.trace) } : {}),
  };
}

/** One inference on a leaf's backend, through its resilience policies; `counter` counts each attempt. */
export function callLeaf(
  leaf: LeafNode,
  req: InferRequest,
  ctx: LeafCallContext,
  skip?: EndpointFilter,
  counter?: AttemptCounter,
): Promise<InferResponse> {
  return leaf.backend.call((endpoint) => {
    if (counter !== undefined) counter.attempts++;
    return endpoint.infer(req, callOptions(leaf, ctx));
  }, ctx, skip);
}
