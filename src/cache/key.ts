import { createHash, type Hash } from 'node:crypto';
import type { InferRequest, RequestedOutput } from '../core/inference.js';
import type { ParameterValue, Parameters } from '../core/parameters.js';
import type { Tensor } from '../core/tensor.js';

/**
 * Parameters that only say how tensors travel, never what the model computes:
 * the binary tensor extension's `binary_data_output` (request), `binary_data`
 * (requested output) and `binary_data_size` (tensor). The REST codec consumes
 * them before the canonical request is built, but gRPC passes every parameter
 * through, so a gRPC client sending one must still get the REST client's key.
 * They are skipped at every level (request, requested output, input).
 */
const TRANSPORT_PARAMETERS: ReadonlySet<string> = new Set(['binary_data_output', 'binary_data', 'binary_data_size']);

/** Domain separation: a change of framing changes every key instead of colliding with old ones. */
const KEY_VERSION = 'infergate-cache-key/1';

/**
 * The cache key of a request at one target: SHA-256 (hex) over `scope` (the
 * caller passes backend name, backend model and version), then each input's
 * name, datatype, shape and raw bytes (one pass over the tensor Buffers, no
 * re-serialisation), the requested outputs (names + their result-changing
 * parameters), and request parameters that change results.
 *
 * Left out: the request id (it is echoed, not computed on), `req.model` /
 * `req.version` (the scope names the target; the public name may differ per
 * route), and the transport parameters above. So the same tensors sent as REST
 * JSON, REST binary or gRPC (raw or typed contents) give the same key.
 *
 * Every field is length-prefixed (and each list count-prefixed), so no two
 * different requests can produce the same byte stream by concatenation. Inputs
 * are hashed sorted by name; requested outputs keep their order (a backend may
 * answer in that order), and no / an empty list both mean "every output".
 * Parameters are hashed sorted by key with a type tag; integers are hashed the
 * same whether they arrived as a number or a bigint.
 */
export function cacheKey(scope: string, req: InferRequest): string {
  const h = createHash('sha256');
  str(h, KEY_VERSION);
  str(h, scope);

  const inputs = [...req.inputs].sort(byName);
  count(h, inputs.length);
  for (const t of inputs) input(h, t);

  const outputs: readonly RequestedOutput[] = req.outputs ?? [];
  count(h, outputs.length);
  for (const o of outputs) {
    str(h, o.name);
    params(h, o.parameters);
  }

  params(h, req.parameters);
  return h.digest('hex');
}

function byName(a: Tensor, b: Tensor): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function input(h: Hash, t: Tensor): void {
  str(h, t.name);
  str(h, t.datatype);
  count(h, t.shape.length);
  const dims = Buffer.allocUnsafe(8 * t.shape.length);
  t.shape.forEach((d, i) => dims.writeDoubleLE(d, 8 * i));
  h.update(dims);
  // The data as it is: 8-byte length, then the Buffer itself (no copy).
  count(h, t.data.length);
  h.update(t.data);
  params(h, t.parameters);
}

function params(h: Hash, p: Parameters | undefined): void {
  const keys = p === undefined ? [] : Object.keys(p).filter((k) => !TRANSPORT_PARAMETERS.has(k)).sort();
  count(h, keys.length);
  for (const k of keys) {
    str(h, k);
    value(h, p![k]!);
  }
}

function value(h: Hash, v: ParameterValue): void {
  switch (typeof v) {
    case 'string':
      tag(h, 's');
      str(h, v);
      return;
    case 'boolean':
      tag(h, v ? 't' : 'f');
      return;
    case 'bigint':
      tag(h, 'i');
      str(h, v.toString());
      return;
    case 'number':
      if (Number.isInteger(v)) {
        // 5 (REST), int64 "5" and double 5.0 (gRPC) all arrive as the number 5: one key.
        tag(h, 'i');
        str(h, BigInt(v).toString());
      } else {
        tag(h, 'd');
        const b = Buffer.allocUnsafe(8);
        b.writeDoubleLE(v);
        h.update(b);
      }
      return;
  }
}

function tag(h: Hash, t: string): void {
  h.update(t, 'latin1');
}

function count(h: Hash, n: number): void {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64LE(BigInt(n));
  h.update(b);
}

function str(h: Hash, s: string): void {
  const bytes = Buffer.from(s, 'utf8');
  count(h, bytes.length);
  h.update(bytes);
}
