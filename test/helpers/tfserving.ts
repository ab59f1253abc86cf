import { createServer } from 'node:net';
import { expect } from 'vitest';
import { GatewayError, type ErrorCode } from '../../src/core/errors.js';

/** The reference `linear` model's biases per version (reference/tfserving/models.ts, same as Triton's). */
export const LINEAR_BIAS: Readonly<Record<string, readonly number[]>> = { '1': [0.1, -0.2, 0.3], '2': [1, 0, -1] };

/** SCORES of the reference `linear` model for one row, in its documented float32 order. */
export function linearScores(x: readonly number[], bias: readonly number[]): number[] {
  const w = [
    [0.5, -1, 0.25],
    [1.5, 0.5, -0.75],
    [-0.5, 2, 1],
    [1, -0.25, 0.5],
  ];
  return [0, 1, 2].map((j) => {
    let acc = 0;
    for (let k = 0; k < 4; k++) acc = Math.fround(acc + Math.fround(x[k]! * w[k]![j]!));
    return Math.fround(acc + Math.fround(bias[j]!));
  });
}

export function fp32(values: readonly number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

export function readFp32(data: Buffer): number[] {
  return Array.from({ length: data.length / 4 }, (_, i) => data.readFloatLE(i * 4));
}

export function readInt64(data: Buffer): bigint[] {
  return Array.from({ length: data.length / 8 }, (_, i) => data.readBigInt64LE(i * 8));
}

/** Awaits a rejection and checks it is a GatewayError with `code` and a message matching `message`. */
export async function expectGatewayError(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<GatewayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe(code);
  if (message) expect((err as GatewayError).message).toMatch(message);
  return err as GatewayError;
}

/** A port nothing listens on: bound once to learn a free number, then closed. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
