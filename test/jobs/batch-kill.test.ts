// The acceptance test for the batch CLI: a 10,000-row job SIGKILLed at a random point and started again
// yields exactly 10,000 output rows, one per input row, and rows already written are never sent again.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRecordsFile } from '../../src/jobs/formats/index.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ROWS = 10_000;
const BATCH = 50;
const CONCURRENCY = 4;

let triton: TritonReference;
let dir: string;
const children = new Set<ReturnType<typeof spawn>>();

beforeAll(async () => {
  // A little latency per request keeps the job running long enough to be killed in the middle.
  triton = await startTritonReference({ host: '127.0.0.1', latencyMs: 10 });
  dir = await mkdtemp(join(tmpdir(), 'infergate-batch-kill-'));
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await triton?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** Runs `infergate batch` as a child process; `killAtLines` SIGKILLs it once the output holds that many lines. */
async function runCli(args: string[], killAtLines?: { file: string; lines: number }): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(process.execPath, ['bin/infergate.js', 'batch', ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-16_384);
  });
  let poll: NodeJS.Timeout | undefined;
  if (killAtLines !== undefined) {
    poll = setInterval(() => {
      readFile(killAtLines.file, 'utf8').then(
        (text) => {
          if (text.split('\n').length - 1 >= killAtLines.lines) child.kill('SIGKILL');
        },
        () => {},
      );
    }, 20);
  }
  const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearInterval(poll);
  clearTimeout(guard);
  children.delete(child);
  return { code, signal, stderr };
}

describe('infergate batch, killed and resumed', () => {
  it('ends with every input row in the output exactly once', async () => {
    const input = join(dir, 'input.jsonl');
    const output = join(dir, 'output.jsonl');
    const config = join(dir, 'gateway.yaml');
    await writeRecordsFile(input, 'jsonl', Array.from({ length: ROWS }, (_, i) => ({ id: i, INPUT0: [i % 13, 1, 2, 3] })));
    await writeFile(
      config,
      [
        'server: { log_level: warn, request_timeout_ms: 10000 }',
        'backends:',
        `  triton: { kind: triton, protocol: grpc, endpoints: ["${triton.grpcEndpoint}"] }`,
        'models:',
        '  linear: { backend: triton }',
        '',
      ].join('\n'),
    );
    const args = ['--config', config, '--model', 'linear', '--input', input, '--output', output, '--batch-size', String(BATCH), '--concurrency', String(CONCURRENCY)];
    const killAt = 1_000 + Math.floor(Math.random() * 7_000);
    const first = await runCli(args, { file: output, lines: killAt });
    expect(first.signal, first.stderr).toBe('SIGKILL');
    const callsAtKill = triton.stats.inferCalls;
    const linesAtKill = (await readFile(output, 'utf8')).split('\n').length - 1;
    expect(linesAtKill).toBeLessThan(ROWS);

    const second = await runCli(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('completed');

    const lines = (await readFile(output, 'utf8')).split('\n');
    expect(lines.pop()).toBe('');
    const rows = lines.map((l) => JSON.parse(l) as { row: number; id: number; SCORES: number[]; CLASS: number });
    expect(rows).toHaveLength(ROWS);
    const seen = new Set(rows.map((r) => r.row));
    expect(seen.size).toBe(ROWS);
    for (const r of rows) expect(r.id).toBe(r.row);
    expect(Math.min(...seen)).toBe(0);
    expect(Math.max(...seen)).toBe(ROWS - 1);
    // The resumed run sent only what was not written: the rows left, plus those in flight at the kill.
    const secondCalls = triton.stats.inferCalls - callsAtKill;
    expect(secondCalls).toBeLessThanOrEqual(Math.ceil((ROWS - linesAtKill) / BATCH) + CONCURRENCY + 1);
  }, 240_000);
});
