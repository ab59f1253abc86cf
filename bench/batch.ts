import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { writeRecordsFile } from '../src/jobs/formats/index.js';
import { spawnGateway, spawnTritonReference } from '../test/helpers/processes.js';

/**
 * Batch serving against the real-time path on the same backend, measured in
 * one run: rows per second of
 *
 * - real-time: one row per request, 32 clients, through a gateway process;
 * - `infergate batch` over a JSONL file of the same rows, one row per request
 *   and 64 rows per request (the CLI's own rate, start-up excluded).
 *
 * The backend is the reference Triton in its own process, answering each
 * call after 2 ms (a model's compute; a batched call costs the same as a
 * single one, as on a GPU). The load generator is Node: read the ratios.
 */

const ROWS = 20_000;
const CLIENTS = 32;
const ROOT = fileURLToPath(new URL('../', import.meta.url));

interface Row {
  readonly name: string;
  readonly rows: number;
  readonly rowsPerSecond: number;
  /** rowsPerSecond / the real-time row's. */
  readonly ratio: number;
}

export interface BatchBenchResult {
  readonly rowsPerRun: number;
  readonly backendLatencyMs: number;
  readonly rows: readonly Row[];
}

export async function run(): Promise<BatchBenchResult> {
  const dir = await mkdtemp(join(tmpdir(), 'infergate-bench-batch-'));
  const backend = await spawnTritonReference({ latencyMs: 2 });
  try {
    const config = join(dir, 'gateway.yaml');
    await writeFile(
      config,
      [
        'server: { http: { host: 127.0.0.1, port: 0 }, grpc: { host: 127.0.0.1, port: 0 }, log_level: info }',
        'auth: { enabled: false }',
        'backends:',
        `  triton: { kind: triton, protocol: grpc, endpoints: ["${backend.grpc}"] }`,
        'models:',
        '  linear: { backend: triton }',
        '',
      ].join('\n'),
    );
    const records = Array.from({ length: ROWS }, (_, i) => ({ id: i, INPUT0: [i % 11, 1, 2, 3] }));
    const input = join(dir, 'input.jsonl');
    await writeRecordsFile(input, 'jsonl', records);

    const realtime = await realtimeRowsPerSecond(config, records);
    const batch1 = await batchRowsPerSecond(config, input, join(dir, 'out-1.jsonl'), 1, CLIENTS);
    const batch64 = await batchRowsPerSecond(config, input, join(dir, 'out-64.jsonl'), 64, 4);
    const row = (name: string, rowsPerSecond: number): Row => ({ name, rows: ROWS, rowsPerSecond: Math.round(rowsPerSecond), ratio: Math.round((rowsPerSecond / realtime) * 100) / 100 });
    return {
      rowsPerRun: ROWS,
      backendLatencyMs: 2,
      rows: [
        row(`real-time, 1 row/request, ${CLIENTS} clients`, realtime),
        row(`batch CLI, 1 row/request, concurrency ${CLIENTS}`, batch1),
        row('batch CLI, 64 rows/request, concurrency 4', batch64),
      ],
    };
  } finally {
    await backend.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

async function realtimeRowsPerSecond(config: string, records: readonly { INPUT0: number[] }[]): Promise<number> {
  const gateway = await spawnGateway(config);
  const pool = new Pool(`http://${gateway.http}`, { connections: CLIENTS });
  try {
    let next = 0;
    let errors = 0;
    const client = async (): Promise<void> => {
      for (let i = next++; i < records.length; i = next++) {
        const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: records[i]!.INPUT0 }] });
        const res = await pool.request({ path: '/v2/models/linear/infer', method: 'POST', headers: { 'content-type': 'application/json' }, body });
        await res.body.dump();
        if (res.statusCode !== 200) errors++;
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: CLIENTS }, client));
    const seconds = (performance.now() - started) / 1000;
    if (errors > 0) throw new Error(`real-time run had ${errors} failed requests`);
    return records.length / seconds;
  } finally {
    await pool.close();
    await gateway.kill('SIGTERM');
  }
}

/** Runs the CLI and reads its own rate from the summary line, so process start-up is not counted. */
async function batchRowsPerSecond(config: string, input: string, output: string, batchSize: number, concurrency: number): Promise<number> {
  const args = ['bin/infergate.js', 'batch', '--config', config, '--model', 'linear', '--input', input, '--output', output, '--batch-size', String(batchSize), '--concurrency', String(concurrency)];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  const rate = / at (\d+) rows\/s/.exec(stderr);
  if (code !== 0 || rate === null) throw new Error(`infergate batch failed (exit ${code}): ${stderr.slice(-2_000)}`);
  return Number(rate[1]);
}

export function format(result: BatchBenchResult): string {
  const lines = [`Batch vs real-time, ${result.rowsPerRun} rows, backend ${result.backendLatencyMs} ms per call`];
  for (const r of result.rows) lines.push(`  ${r.name.padEnd(44)} ${String(r.rowsPerSecond).padStart(7)} rows/s  x${r.ratio.toFixed(2)}`);
  return lines.join('\n');
}
