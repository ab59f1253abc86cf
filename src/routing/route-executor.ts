import { toGatewayError } from '../core/errors.js';
import { select, type FallbackNode, type LeafNode, type RouteContext, type RouteInput, type RouteNode } from './route-tree.js';
import type { CancelSignal } from '../core/cancel.js';

/**
 * Runs one request through a compiled routing tree: weighted and match nodes
 * pick a child, a leaf is called, and a fallback tries its children in order
 * while the failure is one its `fallback_on` names and the request's deadline
 * has time left. What was tried is recorded in the caller's RouteState, so
 * the API can say which leaf served the request and after how many attempts.
 */

/** Where a request went; one per request, filled in as it runs. */
export interface RouteState {
  /** The leaf that served the request, or the last one tried when it failed. */
  leaf: LeafNode | undefined;
  /** Backend calls made; the leaf call increments it once it has an endpoint to call. */
  attempts: number;
}

/** What the executor needs of a request's context (RequestContext fits). */
export interface ExecContext extends RouteContext {
  /** Absolute deadline of the whole request (ms since the epoch). */
  readonly deadline: number;
  readonly signal?: CancelSignal;
}

/**
 * Calls one leaf for the request. Takes everything as arguments, so the
 * service passes one function built once rather than a closure per request.
 */
export type LeafCall<T, R extends RouteInput, C extends ExecContext, S extends RouteState> = (
  leaf: LeafNode,
  req: R,
  ctx: C,
  state: S,
) => Promise<T>;

export function execute<T, R extends RouteInput, C extends ExecContext, S extends RouteState>(
  node: RouteNode,
  req: R,
  ctx: C,
  call: LeafCall<T, R, C, S>,
  state: S,
): Promise<T> {
  const at = select(node, req, ctx);
  if (at.kind === 'fallback') return tryInOrder(at, req, ctx, call, state);
  state.leaf = at;
  return call(at, req, ctx, state);
}

async function tryInOrder<T, R extends RouteInput, C extends ExecContext, S extends RouteState>(
  node: FallbackNode,
  req: R,
  ctx: C,
  call: LeafCall<T, R, C, S>,
  state: S,
): Promise<T> {
  const last = node.children.length - 1;
  for (let i = 0; ; i++) {
    try {
      return await execute(node.children[i]!, req, ctx, call, state);
    } catch (err) {
      // The last child's failure, a failure the node does not fall back on,
      // and any failure once the client's deadline has passed or it has gone
      // away are the request's answer.
      if (i >= last || !node.movesOn(toGatewayError(err)) || Date.now() >= ctx.deadline || ctx.signal?.aborted === true) throw err;
    }
  }
}
