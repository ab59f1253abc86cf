import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-batch-cli-'));
});
afterAll(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function batch(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['bin/infergate.js', 'batch', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(guard);
  return { code, stderr };
}

describe('infergate batch', () => {
  it('--demo predicts a file against the demo reference servers with no external service; a bad row goes to the error file, exit 3', async () => {
    const input = join(dir, 'rows.jsonl');
    const output = join(dir, 'out.csv');
    const rows = Array.from({ length: 50 }, (_, i) => JSON.stringify({ id: `r${i}`, INPUT0: [1, 2, 3, 4] }));
    rows.push(JSON.stringify({ id: 'bad', INPUT0: [1, 2] }));
    await writeFile(input, `${rows.join('\n')}\n`);
    const run = await batch(['--demo', '--model', 'linear', '--input', input, '--output', output]);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stderr).toMatch(/completed: 50 rows predicted, 1 failed/);
    const csv = (await readFile(output, 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('row,id,SCORES,CLASS');
    expect(csv).toHaveLength(51);
    // linear v2 of [1, 2, 3, 4] (the README's example answer).
    expect(csv.slice(1).every((line) => line.endsWith(',"[7,5,2.75]",0'))).toBe(true);
    const errors = JSON.parse((await readFile(`${output}.errors.jsonl`, 'utf8')).trim()) as { row: number; id: string; error: { code: string } };
    expect(errors).toMatchObject({ row: 50, id: 'bad', error: { code: 'INVALID_ARGUMENT' } });
  }, 90_000);

  it('names what is missing and exits 1', async () => {
    const run = await batch(['--model', 'linear']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('missing --input, --output');
    const unknown = await batch(['--demo', '--model', 'nope', '--input', join(dir, 'rows.jsonl'), '--output', join(dir, 'x.jsonl')]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("model 'nope' is not in the config");
  }, 90_000);
});
