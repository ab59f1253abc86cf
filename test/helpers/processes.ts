// Real child processes for kill and restart tests: the reference Triton and the gateway CLI, started the way a
// user starts them, so a SIGKILL takes down a whole server and its sockets rather than an in-process object.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const START_TIMEOUT_MS = 20_000;
/** A kill() whose signal is ignored escalates to SIGKILL after this long, so teardown stays bounded. */
const KILL_GRACE_MS = 10_000;
const MAX_OUTPUT_CHARS = 64 * 1024;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildServer {
  readonly pid: number;
  /** host:port */
  readonly http: string;
  /** host:port */
  readonly grpc: string;
  /**
   * Sends the signal (default SIGTERM); resolves with the exit code/signal once the process has exited. If it is
   * still alive 10 s later it gets SIGKILL, which then shows in the result.
   */
  kill(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** Resolves when it exits on its own (or by kill()). */
  readonly exited: Promise<ExitInfo>;
  /** stdout+stderr captured so far (the last 64 KiB), for assertion messages. */
  output(): string;
}

// Every child still alive, so none outlives the test run even when a test forgets to kill it.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

interface Endpoints {
  http: string;
  grpc: string;
}

/**
 * Spawns `node args` from the repository root, feeds each stdout line to ready() until it returns the endpoints,
 * and fails (killing the child) if that takes more than 20 s or the child exits first.
 */
async function startChild(what: string, args: string[], env: NodeJS.ProcessEnv, ready: (line: string) => Endpoints | undefined): Promise<ChildServer> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let output = '';
  const capture = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS);
  };
  child.stdout.on('data', capture);
  child.stderr.on('data', capture);
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  // A failed spawn emits 'error' and never 'exit'.
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  spawnError.catch(() => {});

  const endpoints = await new Promise<Endpoints>((resolve, reject) => {
    let pending = '';
    let settled = false;
    const fail = (reason: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      reject(new Error(`${what} ${reason}; output:\n${output}`));
    };
    const timer = setTimeout(() => fail(`did not report its endpoints within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      pending += chunk.toString('utf8');
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        const found = ready(line);
        if (found) {
          settled = true;
          clearTimeout(timer);
          child.stdout.off('data', onData);
          resolve(found);
          return;
        }
      }
    };
    child.stdout.on('data', onData);
    void exited.then((info) => fail(`exited before it was ready (code ${info.code}, signal ${info.signal})`));
    spawnError.catch((err: Error) => fail(`could not be spawned: ${err.message}`));
  });

  return {
    pid: child.pid ?? -1,
    http: endpoints.http,
    grpc: endpoints.grpc,
    exited,
    output: () => output,
    kill: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const escalate = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
        try {
          return await exited;
        } finally {
          clearTimeout(escalate);
        }
      }
      return exited;
    },
  };
}

function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function endpointsOf(record: Record<string, unknown> | undefined): Endpoints | undefined {
  if (record && typeof record.http === 'string' && typeof record.grpc === 'string') return { http: record.http, grpc: record.grpc };
  return undefined;
}

/**
 * Starts `tsx reference/triton/main.ts --host 127.0.0.1 [--http-port P] [--grpc-port P] [--latency-ms N] [...extra]`
 * (the same script a user runs, loaded through tsx's --import hook so the pid is the server's own) and waits for
 * its endpoints JSON line. Fixed ports let a test restart a killed server on the same ports.
 */
export function spawnTritonReference(
  opts: { httpPort?: number; grpcPort?: number; latencyMs?: number; extraArgs?: string[] } = {},
): Promise<ChildServer> {
  const args = ['--import', 'tsx', 'reference/triton/main.ts', '--host', '127.0.0.1'];
  if (opts.httpPort !== undefined) args.push('--http-port', String(opts.httpPort));
  if (opts.grpcPort !== undefined) args.push('--grpc-port', String(opts.grpcPort));
  if (opts.latencyMs !== undefined) args.push('--latency-ms', String(opts.latencyMs));
  args.push(...(opts.extraArgs ?? []));
  return startChild('reference Triton', args, process.env, (line) => endpointsOf(parseJsonLine(line)));
}

/**
 * Starts the gateway CLI (`node bin/infergate.js serve --config FILE`), waits for the pino JSON line with msg
 * 'gateway listening' and returns its http and grpc "host:port" fields. The config's log_level must let info
 * through, or that line never comes. env is merged over process.env.
 */
export function spawnGateway(configFile: string, opts: { env?: Record<string, string> } = {}): Promise<ChildServer> {
  return startChild('gateway', ['bin/infergate.js', 'serve', '--config', configFile], { ...process.env, ...opts.env }, (line) => {
    const record = parseJsonLine(line);
    return record?.msg === 'gateway listening' ? endpointsOf(record) : undefined;
  });
}

/** RSS of a live process in bytes, read from /proc/<pid>/status (VmRSS). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status (a zombie or kernel thread?)`);
  return Number(match[1]) * 1024;
}

/** A free loopback TCP port (listen on 0, read, close). Another process may take it before it is used. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
