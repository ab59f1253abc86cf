import { mkdtemp, readFile, rm, appendFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatch, type BatchProgress, type BatchSpec } from '../../src/jobs/batch-runner.js';
import { readRecords, writeRecordsFile, type RecordFormat } from '../../src/jobs/formats/index.js';
import { createRecordPredictor, type RecordPredictor } from '../../src/routing/record-predictor.js';
import { startStack, type Stack } from '../helpers/stack.js';

let stack: Stack;
let dir: string;
let predictor: RecordPredictor;
beforeAll(async () => {
  stack = await startStack();
  dir = await mkdtemp(join(tmpdir(), 'infergate-batch-'));
  predictor = createRecordPredictor(stack.gateway.service, { model: 'linear', version: '', timeoutMs: 5_000 });
});
afterAll(async () => {
  await stack?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Rows i of the test inputs: a valid record, except every 100th, which lacks the model's input. */
function inputRecords(n: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => (i % 100 === 99 ? { id: `row-${i}`, WRONG: [1, 2, 3, 4] } : { id: `row-${i}`, INPUT0: [i % 7, 1, 2, 3] }));
}

async function rowsOf(path: string, format: RecordFormat): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for await (const r of readRecords(path, format)) {
    if ('error' in r) throw new Error(`unreadable output row ${r.row}: ${r.error}`);
    rows.push({ ...r.record });
  }
  return rows;
}

function spec(name: string, input: string, output: string, over: Partial<BatchSpec> = {}): BatchSpec {
  return { input, output, errors: join(dir, `${name}.errors.jsonl`), batchSize: 16, concurrency: 3, ...over };
}

describe('batch runner', () => {
  for (const [inFormat, outFormat] of [['jsonl', 'jsonl'], ['csv', 'csv'], ['parquet', 'parquet']] as const) {
    it(`predicts every row of a ${inFormat} file into ${outFormat}, failed rows to the error file`, async () => {
      const input = join(dir, `in-${inFormat}.${inFormat}`);
      const output = join(dir, `out-${inFormat}.${outFormat}`);
      await writeRecordsFile(input, inFormat, inputRecords(500));
      const s = spec(`f-${inFormat}`, input, output);
      const summary = await runBatch(s, predictor);
      expect(summary).toMatchObject({ state: 'completed', total: 500, done: 500, succeeded: 495, failed: 5, resumed: 0 });
      const out = await rowsOf(output, outFormat);
      expect(out).toHaveLength(495);
      const byRow = new Map(out.map((r) => [Number(r.row), r]));
      expect(byRow.size).toBe(495);
      const r3 = byRow.get(3)!;
      expect(r3.id).toBe('row-3');
      expect(r3).toHaveProperty('SCORES');
      expect(r3).toHaveProperty('CLASS');
      const errs = (await readFile(s.errors, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { row: number; id: string; error: { code: string; message: string } });
      expect(errs.map((e) => e.row).sort((a, b) => a - b)).toEqual([99, 199, 299, 399, 499]);
      expect(errs[0]!.error.code).toBe('INVALID_ARGUMENT');
      expect(errs[0]!.error.message).toContain('INPUT0');
      expect(errs.map((e) => e.id).sort()).toEqual(['row-199', 'row-299', 'row-399', 'row-499', 'row-99']);
    });
  }

  it('sends rows in batches of batch_size', async () => {
    const input = join(dir, 'batched.jsonl');
    await writeRecordsFile(input, 'jsonl', Array.from({ length: 320 }, (_, i) => ({ INPUT0: [i, 0, 0, 0] })));
    const before = stack.triton.stats.inferCalls;
    await runBatch(spec('batched', input, join(dir, 'batched-out.jsonl'), { batchSize: 32 }), predictor);
    expect(stack.triton.stats.inferCalls - before).toBe(10);
  });

  it('a stopped run resumes: every row exactly once, done rows never sent again', async () => {
    const input = join(dir, 'resume.jsonl');
    const output = join(dir, 'resume-out.jsonl');
    await writeRecordsFile(input, 'jsonl', inputRecords(3_000));
    const s = spec('resume', input, output, { batchSize: 20, concurrency: 2 });
    const ac = new AbortController();
    stack.triton.setFault({ kind: 'latency', ms: 5 });
    let first;
    try {
      first = await runBatch(s, predictor, {
        signal: ac.signal,
        progressIntervalMs: 10,
        onProgress: (p: BatchProgress) => {
          if (p.done >= 600) ac.abort();
        },
      });
    } finally {
      stack.triton.setFault(undefined);
    }
    expect(first.state).toBe('cancelled');
    expect(first.done).toBeGreaterThanOrEqual(600);
    expect(first.done).toBeLessThan(3_000);
    // A torn line, as a kill in the middle of a write leaves it.
    await appendFile(output, '{"row":2999,"id":"row-2999","SCO');
    const callsBefore = stack.triton.stats.inferCalls;
    const second = await runBatch(s, predictor);
    const calls = stack.triton.stats.inferCalls - callsBefore;
    expect(second).toMatchObject({ state: 'completed', total: 3_000, done: 3_000, resumed: first.done });
    // Only the rows left were sent: at most ceil(left / batch) requests, plus one per partial chunk left by the holes.
    expect(calls).toBeLessThanOrEqual(Math.ceil((3_000 - first.done) / 20) + 2);
    const out = await rowsOf(output, 'jsonl');
    const errs = (await readFile(s.errors, 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { row: number }).row);
    const all = [...out.map((r) => Number(r.row)), ...errs].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 3_000 }, (_, i) => i));
  });

  it('retries rows that failed because the backend was away', async () => {
    const input = join(dir, 'flaky.jsonl');
    await writeRecordsFile(input, 'jsonl', Array.from({ length: 40 }, (_, i) => ({ INPUT0: [i, 0, 0, 0] })));
    stack.triton.setFault({ kind: 'error', status: 'UNAVAILABLE' });
    setTimeout(() => stack.triton.setFault(undefined), 300);
    const s = spec('flaky', input, join(dir, 'flaky-out.jsonl'), { batchSize: 10, concurrency: 1 });
    const summary = await runBatch(s, predictor);
    expect(summary).toMatchObject({ state: 'completed', succeeded: 40, failed: 0 });
  });

  it('refuses bad specs with clear errors', async () => {
    await expect(runBatch(spec('x', join(dir, 'in.txt'), join(dir, 'o.jsonl')), predictor)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(runBatch(spec('x', join(dir, 'missing.jsonl'), join(dir, 'o2.jsonl')), predictor)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(runBatch(spec('x', join(dir, 'in-jsonl.jsonl'), join(dir, 'no-dir', 'o.jsonl')), predictor)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(runBatch(spec('x', join(dir, 'in-jsonl.jsonl'), join(dir, 'o3.jsonl'), { batchSize: 0 }), predictor)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(stat(join(dir, 'o3.jsonl'))).rejects.toThrow();
  });
});
