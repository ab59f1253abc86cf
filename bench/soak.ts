import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAndCheckWrk, LOAD_CORE, oneModelGateway, postScript, startPinned, stopPinned, type PinnedServer } from './lib/pinned.js';

/**
 * Memory under many connections, and over time: Infergate (its JavaScript build, as bench/compare.ts runs it, auth
 * and metrics on, log_level info) in front of the reference Triton, driven by wrk with 1,000 concurrent keep-alive
 * connections (REST JSON, a 1x4 FP32 tensor) for SOAK_S seconds (5 minutes; INFERGATE_SOAK_S to change it). The
 * gateway's RSS (/proc/PID/status VmRSS) is sampled every 5 s: the peak at 1,000 connections, and the mean of the
 * first and of the last minute, whose ratio says whether memory stays flat. Loopback only; wrk stops by itself.
 */

const SOAK_S = Number(process.env.INFERGATE_SOAK_S ?? 300);
const CONNECTIONS = 1_000;
const SAMPLE_MS = 5_000;
const API_KEY = 'bench-soak-key-0123456789abcdef';
/** RSS target at 1,000 connections (issue 11). */
const RSS_LIMIT_MB = 200;
/** "Flat": the last minute's mean RSS within this fraction of the first minute's. */
const FLAT_WITHIN = 0.1;

export interface SoakResult {
  readonly connections: number;
  readonly seconds: number;
  readonly requests: number;
  readonly errors: number;
  /** wrk's kinds of error: socket errors (connect, read, write), non-2xx answers (status), and timeouts (10 s). */
  readonly errorKinds: { readonly connect: number; readonly read: number; readonly write: number; readonly status: number; readonly timeout: number };
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly idleRssMb: number;
  readonly peakRssMb: number;
  readonly firstMinuteRssMb: number;
  readonly lastMinuteRssMb: number;
  /** lastMinuteRssMb / firstMinuteRssMb. */
  readonly growth: number;
  readonly samples: readonly { readonly atS: number; readonly rssMb: number }[];
  readonly targets: readonly { readonly target: string; readonly measured: string; readonly met: boolean }[];
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return Math.round((kb / 1024) * 10) / 10;
}

export async function run(): Promise<SoakResult> {
  buildAndCheckWrk();
  const dir = await mkdtemp(join(tmpdir(), 'infergate-bench-soak-'));
  let backend: PinnedServer | undefined;
  let gateway: PinnedServer | undefined;
  try {
    backend = await startPinned(['dist/reference/triton/main.js', '--host', '127.0.0.1'], process.env);
    const config = join(dir, 'gateway.yaml');
    await writeFile(config, oneModelGateway(backend.http, 'INFERGATE_SOAK_KEY'));
    gateway = await startPinned(['dist/infergate.js', 'serve', '--config', config], { ...process.env, INFERGATE_SOAK_KEY: API_KEY }, 'gateway listening');
    const pid = gateway.child.pid!;
    const script = join(dir, 'soak.lua');
    await writeFile(
      script,
      postScript(
        API_KEY,
        `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%.0f,"p99":%.0f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`,
      ),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const idleRssMb = await rssMb(pid);
    const url = `http://${gateway.http}/v2/models/linear/infer`;
    const wrk = spawn('taskset', ['-c', LOAD_CORE, 'wrk', '-t1', `-c${CONNECTIONS}`, `-d${SOAK_S}s`, '--timeout', '10s', '-s', script, url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    wrk.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    wrk.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const finished = new Promise<number | null>((resolve) => wrk.once('exit', resolve));
    const samples: { atS: number; rssMb: number }[] = [];
    const started = Date.now();
    const sampler = setInterval(() => {
      void rssMb(pid)
        .then((mb) => samples.push({ atS: Math.round((Date.now() - started) / 1000), rssMb: mb }))
        .catch(() => undefined);
    }, SAMPLE_MS);
    const killer = setTimeout(() => wrk.kill('SIGKILL'), (SOAK_S + 30) * 1000);
    await finished;
    clearInterval(sampler);
    clearTimeout(killer);
    const line = /WRKJSON (\{.*\})/.exec(out);
    if (!line) throw new Error(`wrk gave no result: ${out}`);
    const w = JSON.parse(line[1]!) as {
      requests: number;
      duration_us: number;
      errors: number;
      connect: number;
      read: number;
      write: number;
      status: number;
      timeout: number;
      p50: number;
      p99: number;
    };
    const minute = Math.min(60, SOAK_S / 3);
    const mean = (xs: number[]): number => Math.round((xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)) * 10) / 10;
    const first = mean(samples.filter((s) => s.atS <= minute).map((s) => s.rssMb));
    const last = mean(samples.filter((s) => s.atS > SOAK_S - minute).map((s) => s.rssMb));
    const peak = Math.max(...samples.map((s) => s.rssMb));
    const growth = Math.round((last / first) * 1000) / 1000;
    return {
      connections: CONNECTIONS,
      seconds: SOAK_S,
      requests: w.requests,
      errors: w.errors,
      errorKinds: { connect: w.connect, read: w.read, write: w.write, status: w.status, timeout: w.timeout },
      perSecond: Math.round(w.requests / (w.duration_us / 1e6)),
      p50Ms: Math.round(w.p50) / 1000,
      p99Ms: Math.round(w.p99) / 1000,
      idleRssMb,
      peakRssMb: peak,
      firstMinuteRssMb: first,
      lastMinuteRssMb: last,
      growth,
      samples,
      targets: [
        { target: `RSS < ${RSS_LIMIT_MB} MB at ${CONNECTIONS} connections`, measured: `peak ${peak} MB`, met: peak < RSS_LIMIT_MB },
        {
          target: `RSS flat over the soak (last minute within ${FLAT_WITHIN * 100}% of the first)`,
          measured: `${first} -> ${last} MB (x${growth})`,
          met: Math.abs(growth - 1) <= FLAT_WITHIN,
        },
      ],
    };
  } finally {
    await stopPinned(gateway);
    await stopPinned(backend);
    await rm(dir, { recursive: true, force: true });
  }
}

export function format(result: unknown): string {
  const r = result as SoakResult;
  return [
    `## Soak: ${r.connections} connections for ${r.seconds} s (wrk, REST JSON small, Infergate with auth, metrics and relay: true)`,
    '',
    '| requests | errors | req/s | p50 ms | p99 ms | idle RSS MB | peak RSS MB | first minute MB | last minute MB | growth |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    `| ${r.requests} | ${r.errors} | ${r.perSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.idleRssMb} | ${r.peakRssMb} | ${r.firstMinuteRssMb} | ${r.lastMinuteRssMb} | ${r.growth} |`,
    '',
    '| target | measured | met |',
    '|---|---|---|',
    ...r.targets.map((t) => `| ${t.target} | ${t.measured} | ${t.met ? 'yes' : 'no'} |`),
    '',
    `- errors by kind (wrk): ${Object.entries(r.errorKinds).map(([k, v]) => `${k} ${v}`).join(', ')}`,
  ].join('\n');
}
