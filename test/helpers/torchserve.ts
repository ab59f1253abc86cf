import { expect } from 'vitest';
import type { CallOptions, TorchServeModelOptions } from '../../src/backends/backend.js';
import { GatewayError, type ErrorCode } from '../../src/core/errors.js';
import type { InferRequest } from '../../src/core/inference.js';
import type { Tensor } from '../../src/core/tensor.js';

/**
 * Expected values and request builders for tests against the reference
 * TorchServe. The math is restated here (float32 via Float32Array rounding),
 * independently of src/ and of the reference.
 */

const f32 = (x: number): number => new Float32Array([x])[0]!;
const W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]];
const BIAS: Record<string, number[]> = { '1.0': [0.1, -0.2, 0.3], '2.0': [1, 0, -1] };

/** The linear model in float32 (the default version is 2.0); CLASS is the first argmax. */
export function linear(rows: readonly (readonly number[])[], version = '2.0'): { SCORES: number[][]; CLASS: number[] } {
  const SCORES = rows.map((row) =>
    [0, 1, 2].map((j) => {
      let acc = 0;
      for (let k = 0; k < 4; k++) acc = f32(acc + f32(f32(row[k] ?? 0) * W[k]![j]!));
      return f32(acc + f32(BIAS[version]![j]!));
    }),
  );
  return { SCORES, CLASS: SCORES.map((s) => s.indexOf(Math.max(...s))) };
}

export const ROWS = [[1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], [-1.5, 3.25, 1e-3, 7]];

/** The little-endian bytes of `values` as FP32 / INT32 / INT64, written by hand. */
export function fp32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}
export function int32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeInt32LE(v, i * 4));
  return b;
}
export function int64(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
  return b;
}

/** One-element BYTES framing (4-byte LE length, then the bytes). */
export function bytesElement(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([len, body]);
}

/** The bytes of a one-element BYTES tensor. */
export function bytesOf(t: Tensor | undefined): Buffer {
  expect(t?.datatype).toBe('BYTES');
  const data = t!.data;
  expect(data.readUInt32LE(0)).toBe(data.length - 4);
  return data.subarray(4);
}

export const LINEAR_TYPES: Partial<TorchServeModelOptions> = { outputTypes: { SCORES: 'FP32', CLASS: 'INT64' } };

export function soon(ms = 5_000, torchserve: Partial<TorchServeModelOptions> = {}): CallOptions {
  return {
    deadline: Date.now() + ms,
    model: {
      torchserve: { request: 'json', response: 'json', inputKeys: {}, outputName: 'OUTPUT0', outputTypes: {}, ...torchserve },
    },
  };
}

export function linearRequest(rows: readonly (readonly number[])[] = ROWS, version = '', extra: Partial<InferRequest> = {}): InferRequest {
  return {
    model: 'linear',
    version,
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows.length, 4], data: fp32(rows.flat()) }],
    ...extra,
  };
}

export const A16 = Array.from({ length: 16 }, (_, i) => i * 1000 - 3);
export const B16 = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? 2147483647 : -7 * i));

export function simpleRequest(): InferRequest {
  return {
    model: 'simple',
    version: '',
    inputs: [
      { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: int32(A16) },
      { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], data: int32(B16) },
    ],
  };
}

/** A request whose only input is one BYTES element: the body TorchServe gets, as it is. */
export function bodyRequest(model: string, body: Buffer | string, contentType?: string): InferRequest {
  return {
    model,
    version: '',
    inputs: [
      {
        name: 'data',
        datatype: 'BYTES',
        shape: [1],
        data: bytesElement(body),
        ...(contentType !== undefined ? { parameters: { content_type: contentType } } : {}),
      },
    ],
  };
}

export const ALL_BYTES = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));

export async function expectGatewayError(promise: Promise<unknown>, code: ErrorCode, message?: string | RegExp): Promise<GatewayError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GatewayError);
  const error = caught as GatewayError;
  expect(error.code, error.message).toBe(code);
  if (message !== undefined) expect(error.message).toMatch(message);
  return error;
}

export async function collect<T>(parts: AsyncIterable<T>): Promise<{ parts: T[]; times: number[] }> {
  const out: T[] = [];
  const times: number[] = [];
  for await (const part of parts) {
    out.push(part);
    times.push(Date.now());
  }
  return { parts: out, times };
}
