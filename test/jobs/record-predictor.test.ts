import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRecordPredictor, type RecordOutcome } from '../../src/routing/record-predictor.js';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

const ok = (o: RecordOutcome | undefined): Record<string, string> => {
  if (o === undefined || !o.ok) throw new Error(`expected a prediction, got ${JSON.stringify(o)}`);
  return o.outputs;
};
const failed = (o: RecordOutcome | undefined) => {
  if (o === undefined || o.ok) throw new Error(`expected a failure, got ${JSON.stringify(o)}`);
  return o.error;
};

describe('record predictor over the gateway pipeline', () => {
  it('merges records into one backend request and answers each with its own outputs', async () => {
    const predictor = createRecordPredictor(stack.gateway.service, { model: 'linear', version: '', timeoutMs: 5_000 });
    const records = Array.from({ length: 10 }, (_, i) => ({ id: `r${i}`, INPUT0: [i, i + 1, i + 2, i + 3] }));
    const before = stack.triton.stats.inferCalls;
    const outcomes = await predictor.predict(records);
    expect(stack.triton.stats.inferCalls - before).toBe(1);
    expect(outcomes).toHaveLength(10);
    // Each record's answer equals what the model gives that record alone.
    for (const i of [0, 4, 9]) {
      const [alone] = await predictor.predict([{ INPUT0: records[i]!.INPUT0 }]);
      expect(ok(outcomes[i])).toEqual(ok(alone));
    }
    const first = ok(outcomes[0]);
    expect(Object.keys(first).sort()).toEqual(['CLASS', 'SCORES']);
    expect(JSON.parse(first.SCORES!)).toHaveLength(3);
    expect(typeof JSON.parse(first.CLASS!)).toBe('number');
  });

  it('fails only the bad records: a missing input, a wrong type, a wrong shape', async () => {
    const predictor = createRecordPredictor(stack.gateway.service, { model: 'linear', version: '', timeoutMs: 5_000 });
    const outcomes = await predictor.predict([
      { INPUT0: [1, 2, 3, 4] },
      { OTHER: [1, 2, 3, 4] },
      { INPUT0: ['a', 'b', 'c', 'd'] },
      { INPUT0: [1, 2, 3] },
      { INPUT0: [5, 6, 7, 8] },
    ]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, false, false, true]);
    const missing = failed(outcomes[1]);
    expect(missing.code).toBe('INVALID_ARGUMENT');
    expect(missing.message).toContain("'INPUT0'");
    expect(failed(outcomes[2]).code).toBe('INVALID_ARGUMENT');
    expect(failed(outcomes[3]).code).toBe('INVALID_ARGUMENT');
  });

  it('answers every record with the routing error for an unknown model or an unreachable backend', async () => {
    const unknown = createRecordPredictor(stack.gateway.service, { model: 'no-such-model', version: '', timeoutMs: 5_000 });
    const a = await unknown.predict([{ INPUT0: [1, 2, 3, 4] }, { INPUT0: [1, 2, 3, 4] }]);
    expect(a.map((o) => failed(o).code)).toEqual(['NOT_FOUND', 'NOT_FOUND']);
    const down = createRecordPredictor(stack.gateway.service, { model: 'down', version: '', timeoutMs: 5_000 });
    const b = await down.predict([{ INPUT0: [1, 2, 3, 4] }]);
    expect(failed(b[0]).code).toBe('UNAVAILABLE');
  });

  it('rejects when its signal aborts', async () => {
    const predictor = createRecordPredictor(stack.gateway.service, { model: 'linear', version: '', timeoutMs: 5_000 });
    stack.triton.setFault({ kind: 'latency', ms: 2_000 });
    try {
      const ac = new AbortController();
      const pending = predictor.predict([{ INPUT0: [1, 2, 3, 4] }], { signal: ac.signal });
      setTimeout(() => ac.abort(), 50);
      await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
    } finally {
      stack.triton.setFault(undefined);
    }
  });
});
