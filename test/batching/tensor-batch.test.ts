import { describe, expect, it } from 'vitest';
import { batchSignature, concatInputs, rowsOf, splitOutputs } from '../../src/batching/tensor-batch.js';
import { DATATYPES, ELEMENT_SIZE, type DataType } from '../../src/core/datatypes.js';
import { GatewayError } from '../../src/core/errors.js';
import type { InferRequest } from '../../src/core/inference.js';
import { elementCount, joinBytesElements, type Tensor } from '../../src/core/tensor.js';

let seed = 1;
function bytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    b[i] = seed >>> 24;
  }
  return b;
}

/** A tensor of `shape` with distinct data; BYTES elements of varying length (0 included). */
function tensor(name: string, datatype: DataType, shape: number[]): Tensor {
  const count = elementCount(shape);
  const size = ELEMENT_SIZE[datatype];
  const data =
    size > 0 ? bytes(count * size) : joinBytesElements(Array.from({ length: count }, (_, i) => bytes((i * 7 + seed) % 11)));
  return { name, datatype, shape, data };
}

function req(inputs: Tensor[], extra: Partial<InferRequest> = {}): InferRequest {
  return { model: 'm', version: '1', inputs, ...extra };
}

describe('concatInputs / splitOutputs', () => {
  for (const datatype of DATATYPES) {
    it(`round-trips ${datatype} with multi-dim shapes`, () => {
      const rows = [1, 3, 2, 5];
      const requests = rows.map((r) => req([tensor('A', datatype, [r, 2, 3]), tensor('B', datatype, [r])]));
      const merged = concatInputs(requests);
      expect(merged.map((t) => [t.name, t.shape])).toEqual([
        ['A', [11, 2, 3]],
        ['B', [11]],
      ]);
      expect(merged[0]?.data).toEqual(Buffer.concat(requests.map((q) => q.inputs[0]!.data)));
      const split = splitOutputs(merged, rows);
      expect(split).toHaveLength(rows.length);
      split.forEach((outs, i) => {
        expect(outs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, data: t.data }))).toEqual(requests[i]!.inputs);
      });
    });
  }

  it('concatenates by name whatever the input order, keeping the first request order', () => {
    const a1 = tensor('A', 'INT32', [1, 2]);
    const b1 = tensor('B', 'FP32', [1]);
    const a2 = tensor('A', 'INT32', [2, 2]);
    const b2 = tensor('B', 'FP32', [2]);
    const merged = concatInputs([req([a1, b1]), req([b2, a2])]);
    expect(merged.map((t) => t.name)).toEqual(['A', 'B']);
    expect(merged[0]?.data).toEqual(Buffer.concat([a1.data, a2.data]));
    expect(merged[1]?.data).toEqual(Buffer.concat([b1.data, b2.data]));
    expect(batchSignature(req([a1, b1]))).toBe(batchSignature(req([b2, a2])));
  });

  it('splits BYTES rows of several elements each, empty elements included', () => {
    const els = ['a', '', 'ccc', 'dd', '', 'ffffff'].map((s) => Buffer.from(s));
    const out: Tensor = { name: 'O', datatype: 'BYTES', shape: [3, 2], data: joinBytesElements(els) };
    const [x, y] = splitOutputs([out], [1, 2]);
    expect(x?.[0]?.data).toEqual(joinBytesElements(els.slice(0, 2)));
    expect(y?.[0]?.shape).toEqual([2, 2]);
    expect(y?.[0]?.data).toEqual(joinBytesElements(els.slice(2)));
  });

  it('splits a tensor with a zero-sized inner dimension', () => {
    const out: Tensor = { name: 'E', datatype: 'FP32', shape: [3, 0], data: Buffer.alloc(0) };
    expect(splitOutputs([out], [2, 1]).map((o) => o[0]?.shape)).toEqual([[2, 0], [1, 0]]);
  });

  const fails = (outputs: Tensor[], rows: number[], name: string): void => {
    let caught: unknown;
    try {
      splitOutputs(outputs, rows);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(GatewayError);
    expect((caught as GatewayError).code).toBe('INTERNAL');
    expect((caught as GatewayError).message).toContain(`'${name}'`);
  };

  it('throws INTERNAL naming the output when shape[0] is not the batch rows', () => {
    fails([tensor('OK', 'FP32', [3]), tensor('WRONG', 'FP32', [4, 2])], [1, 2], 'WRONG');
    fails([{ name: 'SCALAR', datatype: 'FP32', shape: [], data: Buffer.alloc(4) }], [1], 'SCALAR');
  });

  it('throws INTERNAL when the bytes do not hold the shape', () => {
    fails([{ name: 'SHORT', datatype: 'FP32', shape: [3, 2], data: Buffer.alloc(20) }], [1, 2], 'SHORT');
    fails([{ name: 'ODD', datatype: 'INT64', shape: [2], data: Buffer.alloc(15) }], [1, 1], 'ODD');
    const els = joinBytesElements([Buffer.from('x'), Buffer.from('y'), Buffer.from('z')]);
    fails([{ name: 'FEW', datatype: 'BYTES', shape: [2, 2], data: els }], [1, 1], 'FEW');
    fails([{ name: 'TRUNC', datatype: 'BYTES', shape: [2], data: Buffer.concat([els, Buffer.from([9, 0, 0, 0, 1])]) }], [1, 1], 'TRUNC');
  });
});

describe('batchSignature', () => {
  const base = (): InferRequest => req([tensor('INPUT0', 'FP32', [2, 4])], { id: 'a' });

  it('is equal for requests differing only in rows, data and id', () => {
    const other = req([tensor('INPUT0', 'FP32', [5, 4])], { id: 'b' });
    expect(batchSignature(base())).toBeDefined();
    expect(batchSignature(base())).toBe(batchSignature(other));
    expect(rowsOf(other)).toBe(5);
  });

  it('differs on model, version, input name, datatype, inner shape, outputs and parameters', () => {
    const sig = batchSignature(base());
    const variants: InferRequest[] = [
      { ...base(), model: 'n' },
      { ...base(), version: '2' },
      req([tensor('INPUT1', 'FP32', [2, 4])]),
      req([tensor('INPUT0', 'INT32', [2, 4])]),
      req([tensor('INPUT0', 'FP32', [2, 2, 2])]),
      req([tensor('INPUT0', 'FP32', [2, 4]), tensor('X', 'FP32', [2])]),
      { ...base(), outputs: [{ name: 'SCORES' }] },
      { ...base(), outputs: [{ name: 'SCORES', parameters: { classification: 2 } }] },
      { ...base(), parameters: { priority: 1 } },
      { ...base(), parameters: { priority: '1' } },
      req([{ ...tensor('INPUT0', 'FP32', [2, 4]), parameters: { p: true } }]),
    ];
    const sigs = variants.map(batchSignature);
    for (const s of sigs) {
      expect(s).toBeDefined();
      expect(s).not.toBe(sig);
    }
    expect(new Set(sigs).size).toBe(sigs.length);
  });

  it('does not depend on the key order of parameters', () => {
    const a = { ...base(), parameters: { x: 1, y: 'z' } };
    const b = { ...base(), parameters: { y: 'z', x: 1 } };
    expect(batchSignature(a)).toBe(batchSignature(b));
  });

  it('is undefined for requests that cannot be batched', () => {
    const invalid: InferRequest[] = [
      req([]),
      req([{ name: 'S', datatype: 'FP32', shape: [], data: Buffer.alloc(4) }]),
      req([tensor('A', 'FP32', [2, 4]), tensor('B', 'FP32', [3])]),
      req([tensor('A', 'FP32', [0, 4])]),
      req([{ name: 'A', datatype: 'FP32', shape: [2, 4], data: Buffer.alloc(31) }]),
      req([{ name: 'A', datatype: 'BYTES', shape: [2], data: joinBytesElements([Buffer.from('only one')]) }]),
      req([{ name: 'A', datatype: 'FP32', shape: [1, -4], data: Buffer.alloc(0) }]),
      req([tensor('A', 'FP32', [1]), tensor('A', 'FP32', [1])]),
    ];
    for (const r of invalid) expect(batchSignature(r)).toBeUndefined();
  });
});
