import { describe, expect, it } from 'vitest';
import { decodeCachedResponse, encodeCachedResponse } from '../../src/cache/codec.js';
import { DATATYPES, ELEMENT_SIZE, type DataType } from '../../src/core/datatypes.js';
import { GatewayError } from '../../src/core/errors.js';
import type { InferResponse } from '../../src/core/inference.js';
import { joinBytesElements, type Tensor } from '../../src/core/tensor.js';

function tensorOf(datatype: DataType, i: number): Tensor {
  if (datatype === 'BYTES') {
    const data = joinBytesElements([Buffer.from('héllo'), Buffer.alloc(0), Buffer.from([0, 255, 7])]);
    return { name: `out_${datatype}`, datatype, shape: [3, 1], data };
  }
  const count = 6;
  const data = Buffer.alloc(count * ELEMENT_SIZE[datatype]);
  for (let b = 0; b < data.length; b++) data[b] = (b * 37 + i) & 0xff;
  return { name: `out_${datatype}`, datatype, shape: [2, 3], data };
}

const full: InferResponse = {
  model: 'linear',
  version: '3',
  id: 'req-42',
  parameters: { sequence_end: true, note: 'x"y\\z', big: 2n ** 63n + 5n, neg: -(2n ** 62n) * 3n, f: 0.125, n: 7, nan: Number.NaN, inf: -Infinity },
  outputs: DATATYPES.map((d, i) => (i === 2 ? { ...tensorOf(d, i), parameters: { scale: 0.5, tag: 'a', on: false } } : tensorOf(d, i))),
};

function expectSame(a: InferResponse, b: InferResponse): void {
  expect(b.model).toBe(a.model);
  expect(b.version).toBe(a.version);
  expect(b.id).toBe(a.id);
  expect(b.parameters).toEqual(a.parameters);
  expect(b.outputs.length).toBe(a.outputs.length);
  a.outputs.forEach((t, i) => {
    const u = b.outputs[i]!;
    expect(u.name).toBe(t.name);
    expect(u.datatype).toBe(t.datatype);
    expect(u.shape).toEqual(t.shape);
    expect(u.parameters).toEqual(t.parameters);
    expect(u.data.equals(t.data)).toBe(true);
  });
}

describe('cached response codec', () => {
  it('round-trips every datatype (BYTES included), parameters of every kind, and the id', () => {
    const decoded = decodeCachedResponse(encodeCachedResponse(full));
    expectSame(full, decoded);
    expect(decoded.parameters!.big).toBe(2n ** 63n + 5n);
    expect(Number.isNaN(decoded.parameters!.nan)).toBe(true);
    expect('id' in decodeCachedResponse(encodeCachedResponse({ model: 'm', version: '', outputs: [] }))).toBe(false);
  });

  it('round-trips a response with no outputs, parameters or id, and empty tensors', () => {
    const empty: InferResponse = { model: 'm', version: '', outputs: [{ name: 'e', datatype: 'FP32', shape: [0, 4], data: Buffer.alloc(0) }] };
    const decoded = decodeCachedResponse(encodeCachedResponse(empty));
    expectSame(empty, decoded);
    expect(decoded.parameters).toBeUndefined();
  });

  it('is compact: a small header plus the raw data', () => {
    const data = Buffer.alloc(1 << 20, 3);
    const resp: InferResponse = { model: 'm', version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [1 << 18], data }] };
    const entry = encodeCachedResponse(resp);
    expect(entry.length - data.length).toBeLessThan(100);
  });

  it('throws on a corrupt entry', () => {
    const good = encodeCachedResponse(full);
    const corrupt: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from('hello world, not an entry'),
      good.subarray(0, good.length - 1), // truncated
      Buffer.concat([good, Buffer.from([0])]), // trailing byte
      good.subarray(0, 10),
    ];
    // A flipped bit anywhere: magic, checksum, header length, header, data.
    for (const at of [0, 5, 9, 20, good.length - 3]) {
      const b = Buffer.from(good);
      b[at] = b[at]! ^ 0x10;
      corrupt.push(b);
    }
    for (const b of corrupt) {
      expect(() => decodeCachedResponse(b)).toThrow(GatewayError);
    }
  });

  it('rejects a well-formed entry whose header disagrees with its data', () => {
    // Re-encode with the right checksum but a shape that needs more bytes than the data holds.
    const resp: InferResponse = { model: 'm', version: '', outputs: [{ name: 'y', datatype: 'FP32', shape: [2], data: Buffer.alloc(8) }] };
    const bad = encodeCachedResponse({ ...resp, outputs: [{ ...resp.outputs[0]!, shape: [3] }] });
    expect(() => decodeCachedResponse(bad)).toThrow(/corrupt cache entry/);
  });
});
