import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';
import protobuf from 'protobufjs';
import { v2Client, grpc } from '../test/helpers/grpc-client.js';

/**
 * What a request costs through Infergate against what it costs through the
 * usual alternatives, all measured in one run against the SAME reference
 * Triton (its own process):
 *
 *   (a) direct to the backend;
 *   (b) nginx proxy_pass (grpc_pass for gRPC), keep-alive upstream, 1 worker (Debian's binary);
 *   (c) a bare forwarder: node:http + undici Pool.request (bench/lib/bare-forwarder.ts; HTTP/1.1 only, so no gRPC row);
 *   (d) Infergate from its JavaScript build (npm run build), log_level info, metrics on, auth on with one API key
 *       (sent by the load tool), each model through routing, breakers and retries.
 *
 * Loads: REST JSON and REST binary tensors, small (a 1x4 FP32 tensor) and large (1 MiB: a 1x262144 FP32 tensor
 * through the identity model), with wrk (HTTP/1.1); gRPC ModelInfer with h2load (its grpc-status is checked once
 * with grpc-js, since h2load sees only the HTTP status). (d)'s REST models have `relay: true` (bodies go to Triton as
 * the client's bytes). Extra Infergate rows: the same model decoded and re-encoded (no relay), a cache hit (a model with `cache:`, the
 * same input again) and the dynamic batcher (a model with `batching:`). Then every path at one fixed rate, half of
 * (d)'s REST JSON peak (h2load --h1 --rps), for the latency added under a steady load.
 *
 * The load tool runs on core 0 (taskset -c 0), every server on core 1, so "CPU us/req" is the server side's own
 * cost: utime+stime of the path's server processes (/proc/PID/stat) over the measured run, divided by the requests;
 * the backend's share is reported on its own.
 *
 * Each server is primed once (PRIME_S, discarded); each measurement: a short warm-up, then MEASURE_S loaded
 * (64 connections) and UNLOADED_S unloaded (1 connection, sequential: added p50 against direct).
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Where buildServers() puts the bare forwarder, under dist/ so that it finds undici in node_modules. */
const BARE_FORWARDER = 'dist/bench/bare-forwarder.js';
// Node servers warm their JIT for several seconds, so each server is first primed once (PRIME_S, discarded), then
// every measurement has its own short warm-up.
const PRIME_S = 3;
const WARMUP_S = 1;
const MEASURE_S = 4;
const UNLOADED_S = 2;
const FIXED_RATE_S = 4;
const CONNECTIONS = 64;
/** Large-payload rows: 1 MiB each way per request, so fewer connections. */
const LARGE_CONNECTIONS = 16;
const LARGE_ELEMENTS = 262_144;
const LOAD_CORE = '0';
const SERVER_CORE = '1';
const API_KEY = 'bench-compare-key-0123456789abcdef';
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export interface Row {
  readonly load: string;
  readonly path: string;
  readonly requests: number;
  readonly errors: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** utime+stime of the server side (proxy/gateway; the backend itself for 'direct') per request. */
  readonly cpuUsPerRequest: number;
  /** utime+stime of the backend per request, in the same run. */
  readonly backendCpuUsPerRequest: number;
  /** p50 of one connection, sequential; null where not measured (REST JSON 1 MiB: its loaded run is nearly sequential). */
  readonly unloadedP50Ms: number | null;
  /** unloadedP50Ms minus that of 'direct' (same load). */
  readonly addedUnloadedP50Us: number | null;
}

export interface CompareResult {
  readonly machine: string;
  readonly pinning: string;
  readonly connections: number;
  readonly measureSeconds: number;
  readonly rows: readonly Row[];
  /** Infergate over each other path, per load: req/s and server CPU per request. */
  readonly ratios: readonly { load: string; against: string; throughput: number; cpuPerRequest: number; unloadedP50: number | null }[];
  /** Every path at one fixed rate (half of Infergate's REST JSON peak): latency, and p50 added over direct. */
  readonly fixedRate: readonly FixedRateRow[];
  /** The targets, each with the figure measured and whether it was met. */
  readonly targets: readonly TargetCheck[];
  readonly notes: readonly string[];
}

export interface FixedRateRow {
  readonly path: string;
  readonly ratePerSecond: number;
  readonly requests: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly addedP50Us: number;
}

export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}

// ---------------------------------------------------------------- processes

interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly http: string;
  readonly grpc: string;
  stop(): Promise<void>;
}

/**
 * Spawns `taskset -c 1 CMD ARGS` (taskset execs, so the pid is the server's own) and waits until ready(line)
 * returns its endpoints from stdout, or until `port` accepts a connection (for nginx, which prints nothing).
 */
async function startServer(
  name: string,
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; ready?: (line: string) => { http: string; grpc: string } | undefined; port?: number },
): Promise<Proc> {
  const child: ChildProcess = spawn('taskset', ['-c', SERVER_CORE, cmd, ...args], {
    cwd: ROOT,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => {
    output += `spawn error: ${err.message}\n`;
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const endpoints = await new Promise<{ http: string; grpc: string }>((resolve, reject) => {
      let pending = '';
      let done = false;
      const finish = (err: Error | undefined, value?: { http: string; grpc: string }): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        if (err) reject(err);
        else resolve(value!);
      };
      const timer = setTimeout(() => finish(new Error(`${name} not ready within 20 s; output:\n${output}`)), 20_000);
      child.stderr!.on('data', (c: Buffer) => {
        output = (output + c.toString('utf8')).slice(-16_384);
      });
      child.stdout!.on('data', (c: Buffer) => {
        const text = c.toString('utf8');
        output = (output + text).slice(-16_384);
        if (!opts.ready) return;
        pending += text;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          const found = opts.ready(line);
          if (found) finish(undefined, found);
        }
      });
      void exited.then(() => finish(new Error(`${name} exited before it was ready; output:\n${output}`)));
      const poll = setInterval(() => {
        if (opts.port === undefined) return;
        const s = net.connect(opts.port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          finish(undefined, { http: `127.0.0.1:${opts.port}`, grpc: '' });
        });
        s.once('error', () => s.destroy());
      }, 50);
    });
    return { name, pid: child.pid ?? -1, ...endpoints, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function jsonEndpoints(msg?: string): (line: string) => { http: string; grpc: string } | undefined {
  return (line) => {
    if (!line.startsWith('{')) return undefined;
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      if ((msg === undefined || r.msg === msg) && typeof r.http === 'string' && typeof r.grpc === 'string') return { http: r.http, grpc: r.grpc };
    } catch {
      // not JSON
    }
    return undefined;
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** utime+stime in microseconds of a pid and its direct children (nginx's workers). */
async function cpuUs(pid: number): Promise<number> {
  const one = async (p: number): Promise<number> => {
    try {
      const stat = await readFile(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[0] is field 3 (state); utime is field 14, stime field 15.
      return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS;
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no children file
  }
  const parts = await Promise.all([pid, ...children].map(one));
  return parts.reduce((a, b) => a + b, 0);
}

// ---------------------------------------------------------------- tools

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/** Installs wrk / nginx / h2load from Debian when missing and running as root; returns the tools present. */
function ensureTools(notes: string[]): Set<string> {
  const packages: Record<string, string> = { wrk: 'wrk', nginx: 'nginx', h2load: 'nghttp2-client' };
  const missing = Object.keys(packages).filter((t) => !have(t));
  if (missing.length > 0 && process.getuid?.() === 0) {
    const pkgs = missing.map((t) => packages[t]!);
    process.stderr.write(`compare: missing ${missing.join(', ')}; running: apt-get install -y ${pkgs.join(' ')}\n`);
    let r = spawnSync('apt-get', ['install', '-y', ...pkgs], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) {
      process.stderr.write('compare: apt-get install failed; running: apt-get update, then the install again\n');
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
      r = spawnSync('apt-get', ['install', '-y', ...pkgs], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    notes.push(`installed with apt-get install -y ${pkgs.join(' ')} (exit ${r.status})`);
  }
  const present = new Set(Object.keys(packages).filter(have));
  for (const t of Object.keys(packages)) if (!present.has(t)) notes.push(`${t} is not installed (apt-get install -y ${packages[t]}): its rows were skipped`);
  return present;
}

// ---------------------------------------------------------------- load

interface Load {
  requests: number;
  errors: number;
  seconds: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/** A wrk Lua script: POST the body file with these headers; done() prints one JSON line of the results. */
function wrkScript(bodyFile: string, headers: Record<string, string>): string {
  const h = Object.entries(headers)
    .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
    .join('\n');
  return `local f = assert(io.open(${JSON.stringify(bodyFile)}, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
${h}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50":%.0f,"p99":%.0f,"p999":%.0f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`;
}

function runWrk(url: string, script: string, connections: number, seconds: number): Load {
  const r = spawnSync('taskset', ['-c', LOAD_CORE, 'wrk', '-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', script, url], {
    encoding: 'utf8',
    timeout: (seconds + 20) * 1000,
  });
  const line = /WRKJSON (\{.*\})/.exec(r.stdout ?? '');
  if (!line) throw new Error(`wrk gave no result (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const j = JSON.parse(line[1]!) as { requests: number; duration_us: number; errors: number; p50: number; p99: number; p999: number };
  return { requests: j.requests, errors: j.errors, seconds: j.duration_us / 1e6, p50Us: j.p50, p99Us: j.p99, p999Us: j.p999 };
}

/** h2load (gRPC, or HTTP/1.1 with --h1): -D seconds; latencies from its --log-file (one line per request: start, status, elapsed us). */
async function runH2load(
  url: string,
  bodyFile: string,
  headers: Record<string, string>,
  clients: number,
  streams: number,
  seconds: number,
  dir: string,
  extra: readonly string[] = [],
): Promise<Load> {
  const log = join(dir, `h2load-${Date.now()}.log`);
  const args = ['-c', LOAD_CORE, 'h2load', '-t1', '-c', String(clients), '-m', String(streams), '-D', String(seconds), '-d', bodyFile, '--log-file', log, ...extra];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url);
  const r = spawnSync('taskset', args, { encoding: 'utf8', timeout: (seconds + 20) * 1000 });
  const done = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(r.stdout ?? '');
  const finished = /finished in ([\d.]+)s/.exec(r.stdout ?? '');
  if (!done || !finished) throw new Error(`h2load gave no result (exit ${r.status}): ${r.stdout}${r.stderr}`);
  const lat = (await readFile(log, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.split('\t')[2]))
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  await rm(log, { force: true });
  const succeeded = Number(done[2]);
  return { requests: succeeded, errors: Number(done[3]) + Number(done[4]), seconds: Number(finished[1]), p50Us: q(0.5), p99Us: q(0.99), p999Us: q(0.999) };
}

// ---------------------------------------------------------------- bodies

const JSON_BODY = '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}';

/** A 1x`n` FP32 tensor as v2 JSON (values 0.25, 0.5, 0.75, 1, ...: short, exact decimals). */
function largeJsonBody(n: number): string {
  const values = Array.from({ length: n }, (_, i) => ((i % 4) + 1) / 4);
  return JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, n], data: values }] });
}

/** v2 binary tensor request of `values` as a 1xN FP32 tensor, asking for a binary answer. */
function binaryBody(values: Float32Array): { body: Buffer; headerLength: number } {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, values.length], parameters: { binary_data_size: values.byteLength } }],
      parameters: { binary_data_output: true },
    }),
  );
  const tensor = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  return { body: Buffer.concat([header, tensor]), headerLength: header.length };
}

/** A gRPC-framed ModelInferRequest (1 byte uncompressed flag, 4 bytes big-endian length, the message). */
async function grpcBody(model: string): Promise<Buffer> {
  const root = await new protobuf.Root().load(join(ROOT, 'protos/inference/grpc_service.proto'), { keepCase: true });
  const Req = root.lookupType('inference.ModelInferRequest');
  const msg = Req.encode(
    Req.fromObject({ model_name: model, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] }),
  ).finish();
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(msg.length, 1);
  Buffer.from(msg).copy(frame, 5);
  return frame;
}

async function grpcCheck(address: string, model: string, withKey: boolean): Promise<string> {
  const client = v2Client(address);
  try {
    const md = new grpc.Metadata();
    if (withKey) md.set('authorization', `Bearer ${API_KEY}`);
    const res = await client.unary('ModelInfer', { model_name: model, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] }, md);
    return `grpc-status 0 (outputs: ${(res.outputs as { name: string }[]).map((o) => o.name).join(',')})`;
  } catch (err) {
    return `FAILED: ${(err as Error).message}`;
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------- configs

function nginxConf(dir: string, port: number, grpcPort: number, backend: string, backendGrpc: string): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # 1 MiB bodies both ways stay in memory (no temp files), as they do in the gateway.
  client_max_body_size 0;
  client_body_buffer_size 2m;
  proxy_buffer_size 64k;
  proxy_buffers 32 64k;
  proxy_busy_buffers_size 128k;
  proxy_max_temp_file_size 0;
  upstream backend {
    server ${backend};
    keepalive 64;
  }
  upstream grpc_backend {
    server ${backendGrpc};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  server {
    listen 127.0.0.1:${grpcPort} http2;
    http2_max_requests 1000000;
    keepalive_requests 1000000;
    location / {
      grpc_pass grpc://grpc_backend;
    }
  }
}
`;
}

function gatewayYaml(rest: string, grpcEndpoint: string): string {
  return `server:
  http: { host: 127.0.0.1, port: 0 }
  grpc: { host: 127.0.0.1, port: 0 }
  log_level: info
auth:
  enabled: true
  api_keys:
    - { name: bench, key_env: INFERGATE_BENCH_KEY, models: ["*"] }
backends:
  triton: { kind: triton, protocol: rest, endpoints: ["${rest}"], max_connections: 64 }
  triton-grpc: { kind: triton, protocol: grpc, endpoints: ["${grpcEndpoint}"] }
models:
  linear: { backend: triton, relay: true }
  identity_fp32: { backend: triton, relay: true }
  linear-decoded: { backend: triton, model: linear }
  linear-grpc: { backend: triton-grpc, model: linear }
  linear-cached: { backend: triton, model: linear, cache: { ttl_ms: 600000 } }
  linear-batched: { backend: triton, model: linear, batching: { max_batch_size: 32, max_queue_delay_ms: 1 } }
`;
}

// ---------------------------------------------------------------- run

interface Target {
  readonly path: string;
  readonly url: string;
  readonly pids: number[];
  readonly headers: Record<string, string>;
}

/**
 * Builds dist/ (npm run build), and the bare forwarder beside it: every Node server is measured as JavaScript, as it
 * runs in production, not through tsx (whose keepNames wraps every closure created per request).
 */
async function buildServers(): Promise<void> {
  const r = spawnSync(process.execPath, ['bin/build.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`npm run build failed: ${r.stdout}${r.stderr}`);
  await esbuild({
    entryPoints: [join(ROOT, 'bench/lib/bare-forwarder.ts')],
    outfile: join(ROOT, BARE_FORWARDER),
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  });
}

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

export async function run(): Promise<CompareResult> {
  const notes: string[] = [];
  const tools = ensureTools(notes);
  await buildServers();
  const dir = await mkdtemp(join(tmpdir(), 'infergate-bench-compare-'));
  const procs: Proc[] = [];
  const rows: Row[] = [];
  const fixedRate: FixedRateRow[] = [];
  try {
    const backend = await startServer('reference Triton', process.execPath, ['dist/reference/triton/main.js', '--host', '127.0.0.1'], {
      ready: jsonEndpoints(),
    });
    procs.push(backend);
    const auth = { authorization: `Bearer ${API_KEY}` };
    const direct: Target = { path: '(a) direct', url: `http://${backend.http}`, pids: [backend.pid], headers: {} };
    const targets: Target[] = [direct];
    let nginxGrpc: Target | undefined;

    if (tools.has('nginx')) {
      const [port, grpcPort] = [await freePort(), await freePort()];
      const conf = join(dir, 'nginx.conf');
      await writeFile(conf, nginxConf(dir, port, grpcPort, backend.http, backend.grpc));
      try {
        const nginx = await startServer('nginx', 'nginx', ['-p', dir, '-e', join(dir, 'nginx-error.log'), '-c', conf, '-g', 'daemon off;'], { port });
        procs.push(nginx);
        targets.push({ path: '(b) nginx', url: `http://${nginx.http}`, pids: [nginx.pid], headers: {} });
        nginxGrpc = { path: '(b) nginx', url: `http://127.0.0.1:${grpcPort}`, pids: [nginx.pid], headers: {} };
      } catch (err) {
        notes.push(`nginx did not start: ${(err as Error).message.slice(0, 300)}`);
      }
    }

    const forwarder = await startServer('bare forwarder', process.execPath, [BARE_FORWARDER, '--upstream', backend.http], {
      ready: jsonEndpoints(),
    });
    procs.push(forwarder);
    targets.push({ path: '(c) bare node:http + undici', url: `http://${forwarder.http}`, pids: [forwarder.pid], headers: {} });

    const config = join(dir, 'gateway.yaml');
    await writeFile(config, gatewayYaml(backend.http, backend.grpc));
    const gateway = await startServer('gateway', process.execPath, ['dist/infergate.js', 'serve', '--config', config], {
      env: { ...process.env, INFERGATE_BENCH_KEY: API_KEY },
      ready: jsonEndpoints('gateway listening'),
    });
    procs.push(gateway);
    const infergate: Target = { path: '(d) Infergate', url: `http://${gateway.http}`, pids: [gateway.pid], headers: auth };
    targets.push(infergate);

    const measure = async (
      load: string,
      t: Target,
      drive: (seconds: number, connections: number) => Promise<Load>,
      connections: number,
      unloaded = true,
    ): Promise<void> => {
      await drive(WARMUP_S, connections);
      const before = await Promise.all(t.pids.map(cpuUs));
      const backendBefore = await cpuUs(backend.pid);
      const r = await drive(MEASURE_S, connections);
      const after = await Promise.all(t.pids.map(cpuUs));
      const backendAfter = await cpuUs(backend.pid);
      const serverUs = after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
      const seq = unloaded ? await drive(UNLOADED_S, 1) : undefined;
      const directRow = rows.find((row) => row.load === load && row.path === '(a) direct');
      const n = Math.max(1, r.requests);
      rows.push({
        load,
        path: t.path,
        requests: r.requests,
        errors: r.errors,
        perSecond: Math.round(r.requests / r.seconds),
        p50Ms: round(r.p50Us / 1000, 3),
        p99Ms: round(r.p99Us / 1000, 3),
        p999Ms: round(r.p999Us / 1000, 3),
        // For the direct rows the backend is the server: its CPU is the path's, and "backend" repeats it.
        cpuUsPerRequest: round(serverUs / n, 1),
        backendCpuUsPerRequest: round((backendAfter - backendBefore) / n, 1),
        unloadedP50Ms: seq !== undefined ? round(seq.p50Us / 1000, 3) : null,
        addedUnloadedP50Us: seq === undefined ? null : directRow?.unloadedP50Ms != null ? Math.round(seq.p50Us - directRow.unloadedP50Ms * 1000) : 0,
      });
    };

    if (tools.has('wrk')) {
      const file = async (name: string, data: string | Buffer): Promise<string> => {
        const path = join(dir, name);
        await writeFile(path, data);
        return path;
      };
      const small = binaryBody(new Float32Array([1, 2, 3, 4]));
      const large = binaryBody(Float32Array.from({ length: LARGE_ELEMENTS }, (_, i) => ((i % 4) + 1) / 4));
      const binaryHeaders = (b: { headerLength: number }): Record<string, string> => ({
        'Content-Type': 'application/octet-stream',
        'Inference-Header-Content-Length': String(b.headerLength),
      });
      const json = { 'Content-Type': 'application/json' };
      const loads: { load: string; model: string; file: string; headers: Record<string, string>; connections: number }[] = [
        { load: 'REST JSON', model: 'linear', file: await file('small.json', JSON_BODY), headers: json, connections: CONNECTIONS },
        { load: 'REST binary', model: 'linear', file: await file('small.bin', small.body), headers: binaryHeaders(small), connections: CONNECTIONS },
        // The reference Triton reads and writes JSON tensors slowly (~0.3 s per 1 MiB each way, a test oracle, not
        // a fast server), so this row runs 2 connections; Infergate sends the backend binary tensors instead.
        { load: 'REST JSON 1 MiB', model: 'identity_fp32', file: await file('large.json', largeJsonBody(LARGE_ELEMENTS)), headers: json, connections: 2 },
        { load: 'REST binary 1 MiB', model: 'identity_fp32', file: await file('large.bin', large.body), headers: binaryHeaders(large), connections: LARGE_CONNECTIONS },
      ];
      const prime = join(dir, 'prime.lua');
      for (const t of targets) {
        await writeFile(prime, wrkScript(loads[0]!.file, { ...json, ...t.headers }));
        runWrk(`${t.url}/v2/models/linear/infer`, prime, CONNECTIONS, PRIME_S);
      }
      const script = async (l: { file: string; headers: Record<string, string> }, t: Target): Promise<string> => {
        const path = join(dir, `wrk-${rows.length}.lua`);
        await writeFile(path, wrkScript(l.file, { ...l.headers, ...t.headers }));
        return path;
      };
      for (const l of loads) {
        for (const t of targets) {
          const lua = await script(l, t);
          const url = `${t.url}/v2/models/${l.model}/infer`;
          await measure(l.load, t, async (s, c) => runWrk(url, lua, c, s), l.connections, l.load !== 'REST JSON 1 MiB');
        }
      }
      // The cache-hit and batching paths: REST JSON small through models with `cache:` and `batching:`.
      for (const [path, model] of [
        ['(d) Infergate, decoded (no relay)', 'linear-decoded'],
        ['(d) Infergate, cache hit', 'linear-cached'],
        ['(d) Infergate, dynamic batching', 'linear-batched'],
      ] as const) {
        const lua = await script(loads[0]!, infergate);
        const url = `${infergate.url}/v2/models/${model}/infer`;
        await measure('REST JSON', { ...infergate, path }, async (s, c) => runWrk(url, lua, c, s), CONNECTIONS);
      }

      // Every path at one fixed rate, half of Infergate's REST JSON peak: 16 HTTP/1.1 clients, each at rate/16.
      const peak = rows.find((r) => r.load === 'REST JSON' && r.path === '(d) Infergate')?.perSecond ?? 0;
      if (tools.has('h2load') && peak > 0) {
        const clients = 16;
        const perClient = Math.max(1, Math.floor(peak / 2 / clients));
        for (const t of targets) {
          const headers = { 'content-type': 'application/json', ...t.headers };
          const url = `${t.url}/v2/models/linear/infer`;
          const extra = ['--h1', `--rps=${perClient}`];
          await runH2load(url, loads[0]!.file, headers, clients, 1, WARMUP_S, dir, extra);
          const r = await runH2load(url, loads[0]!.file, headers, clients, 1, FIXED_RATE_S, dir, extra);
          const base = fixedRate[0];
          fixedRate.push({
            path: t.path,
            ratePerSecond: perClient * clients,
            requests: r.requests,
            errors: r.errors,
            p50Ms: round(r.p50Us / 1000, 3),
            p99Ms: round(r.p99Us / 1000, 3),
            p999Ms: round(r.p999Us / 1000, 3),
            addedP50Us: base !== undefined ? Math.round(r.p50Us - base.p50Ms * 1000) : 0,
          });
        }
      }
    }

    if (tools.has('h2load')) {
      const grpcTargets: (Target & { model: string })[] = [
        { path: '(a) direct', url: `http://${backend.grpc}`, pids: [backend.pid], headers: {}, model: 'linear' },
        ...(nginxGrpc !== undefined ? [{ ...nginxGrpc, model: 'linear' }] : []),
        { path: '(d) Infergate', url: `http://${gateway.grpc}`, pids: [gateway.pid], headers: auth, model: 'linear-grpc' },
      ];
      notes.push(`gRPC check (grpc-js, direct): ${await grpcCheck(backend.grpc, 'linear', false)}`);
      if (nginxGrpc !== undefined) notes.push(`gRPC check (grpc-js, nginx grpc_pass): ${await grpcCheck(nginxGrpc.url.slice('http://'.length), 'linear', false)}`);
      notes.push(`gRPC check (grpc-js, Infergate, model linear-grpc): ${await grpcCheck(gateway.grpc, 'linear-grpc', true)}`);
      for (const t of grpcTargets) {
        const body = join(dir, `grpc-${t.model}.bin`);
        await writeFile(body, await grpcBody(t.model));
        const url = `${t.url}/inference.GRPCInferenceService/ModelInfer`;
        const headers = { 'content-type': 'application/grpc', te: 'trailers', ...t.headers };
        await runH2load(url, body, headers, 8, 8, PRIME_S, dir);
        // 64 streams in flight: 8 connections x 8 streams (1 connection x 1 stream when unloaded).
        await measure('gRPC', t, async (s, c) => (c === 1 ? runH2load(url, body, headers, 1, 1, s, dir) : runH2load(url, body, headers, 8, 8, s, dir)), CONNECTIONS);
      }
      notes.push('gRPC rows: the reference Triton gRPC API direct, through nginx grpc_pass, and through Infergate\'s gRPC front (model linear-grpc); the bare forwarder speaks HTTP/1.1 only');
    }
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }

  const ratios: { load: string; against: string; throughput: number; cpuPerRequest: number; unloadedP50: number | null }[] = [];
  for (const d of rows.filter((r) => r.path.startsWith('(d)'))) {
    const against = d.path === '(d) Infergate' ? rows.filter((r) => r.load === d.load && !r.path.startsWith('(d)')) : rows.filter((r) => r.load === d.load && r.path === '(a) direct');
    for (const other of against) {
      ratios.push({
        load: d.path === '(d) Infergate' ? d.load : `${d.load}, ${d.path.slice('(d) Infergate, '.length)}`,
        against: other.path,
        throughput: round(d.perSecond / other.perSecond),
        cpuPerRequest: round(d.cpuUsPerRequest / other.cpuUsPerRequest),
        unloadedP50: d.unloadedP50Ms !== null && other.unloadedP50Ms !== null ? round(d.unloadedP50Ms / other.unloadedP50Ms) : null,
      });
    }
  }
  notes.push(
    'CPU us/req: utime+stime (/proc/PID/stat, incl. nginx workers) of the path\'s own server process(es) over the measured run / requests; for (a) it is the backend itself. "backend us/req" is the reference Triton\'s share in the same run.',
  );
  return {
    machine: `${process.platform} ${process.arch}, node ${process.version}`,
    pinning: `load tool on core ${LOAD_CORE} (taskset), every server on core ${SERVER_CORE}`,
    connections: CONNECTIONS,
    measureSeconds: MEASURE_S,
    rows,
    ratios,
    fixedRate,
    targets: checkTargets(rows),
    notes,
  };
}

/** The targets against this run's figures. */
function checkTargets(rows: readonly Row[]): TargetCheck[] {
  const at = (load: string, path: string): Row | undefined => rows.find((r) => r.load === load && r.path === path);
  const checks: TargetCheck[] = [];
  const d = at('REST JSON', '(d) Infergate');
  const ratio = (other: Row | undefined, min: number, what: string): void => {
    if (d === undefined || other === undefined) return;
    const r = d.perSecond / other.perSecond;
    checks.push({ target: `REST JSON small: (d) >= ${min}x ${what} req/s`, measured: `${round(r)}x (${d.perSecond} vs ${other.perSecond})`, met: r >= min });
  };
  ratio(at('REST JSON', '(c) bare node:http + undici'), 0.9, '(c)');
  ratio(at('REST JSON', '(b) nginx'), 0.5, '(b)');
  if (d !== undefined) {
    checks.push({ target: 'added CPU per request (pinned) <= 40 us', measured: `${d.cpuUsPerRequest} us (REST JSON small)`, met: d.cpuUsPerRequest <= 40 });
    const added = d.addedUnloadedP50Us;
    if (added !== null) checks.push({ target: 'unloaded added p50 <= 100 us over direct', measured: `${added} us`, met: added <= 100 });
  }
  const g = at('gRPC', '(d) Infergate');
  const gd = at('gRPC', '(a) direct');
  if (g !== undefined && gd !== undefined) {
    const r = g.perSecond / gd.perSecond;
    checks.push({ target: 'gRPC: (d) >= 0.8x direct req/s', measured: `${round(r)}x (${g.perSecond} vs ${gd.perSecond})`, met: r >= 0.8 });
  }
  return checks;
}

export function format(result: unknown): string {
  const r = result as CompareResult;
  const lines = [
    `## Infergate against direct, nginx and a bare Node forwarder (${r.pinning}; ${r.connections} connections, 16 for REST binary 1 MiB, 2 for REST JSON 1 MiB; ${r.measureSeconds} s each)`,
    '',
    '| load | path | req/s | p50 ms | p99 ms | p99.9 ms | errors | CPU us/req | backend us/req | unloaded p50 ms | added vs direct us |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.rows.map(
      (x) =>
        `| ${x.load} | ${x.path} | ${x.perSecond} | ${x.p50Ms} | ${x.p99Ms} | ${x.p999Ms} | ${x.errors} | ${x.cpuUsPerRequest} | ${x.backendCpuUsPerRequest} | ${x.unloadedP50Ms ?? '-'} | ${x.addedUnloadedP50Us ?? '-'} |`,
    ),
    '',
    '| load | Infergate / | req/s | CPU/req | unloaded p50 |',
    '|---|---|---:|---:|---:|',
    ...r.ratios.map((x) => `| ${x.load} | ${x.against} | ${x.throughput} | ${x.cpuPerRequest} | ${x.unloadedP50 ?? '-'} |`),
  ];
  if (r.fixedRate.length > 0) {
    lines.push(
      '',
      `Fixed rate, REST JSON small: ${r.fixedRate[0]!.ratePerSecond} req/s (half of Infergate's peak), 16 HTTP/1.1 clients (h2load --h1 --rps)`,
      '',
      '| path | requests | errors | p50 ms | p99 ms | p99.9 ms | added p50 vs direct us |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...r.fixedRate.map((x) => `| ${x.path} | ${x.requests} | ${x.errors} | ${x.p50Ms} | ${x.p99Ms} | ${x.p999Ms} | ${x.addedP50Us} |`),
    );
  }
  lines.push('', '| target | measured | met |', '|---|---|---|', ...r.targets.map((t) => `| ${t.target} | ${t.measured} | ${t.met ? 'yes' : 'no'} |`));
  lines.push('', ...r.notes.map((n) => `- ${n}`));
  return lines.join('\n');
}
