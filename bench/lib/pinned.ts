// What bench/soak.ts and bench/profile.ts share: the build, Node servers pinned to the server core and stopped by
// their own handle, the one-model gateway config they run (auth and metrics on, log_level info), and wrk's POST
// script. Not a bench itself: it lives in bench/lib/ so that bench/run.ts does not pick it up.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LOAD_CORE = '0';
export const SERVER_CORE = '1';

const haveWrk = (): boolean => spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status === 0;

/** `npm run build` (dist/), and wrk (installed with apt when missing and running as root); throws saying what is missing. */
export function buildAndCheckWrk(): void {
  if (!haveWrk() && process.getuid?.() === 0) {
    const install = (): number | null =>
      spawnSync('apt-get', ['install', '-y', 'wrk'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status;
    if (install() !== 0) {
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
      install();
    }
  }
  if (!haveWrk()) throw new Error('wrk is not installed: apt-get install -y wrk');
  const build = spawnSync(process.execPath, ['bin/build.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (build.status !== 0) throw new Error(`npm run build failed: ${build.stdout}${build.stderr}`);
}

export interface PinnedServer {
  readonly child: ChildProcess;
  /** host:port of its REST listener, from the JSON line it printed when ready. */
  readonly http: string;
}

/** Starts `node ARGS` on the server core and waits for the JSON line holding its endpoints (with `msg`, when given). */
export function startPinned(args: string[], env: NodeJS.ProcessEnv, msg?: string): Promise<PinnedServer> {
  const child = spawn('taskset', ['-c', SERVER_CORE, process.execPath, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} not ready in 20 s:\n${output}`));
    }, 20_000);
    child.stderr!.on('data', (c: Buffer) => (output = (output + c.toString()).slice(-8_000)));
    child.stdout!.on('data', (c: Buffer) => {
      output = (output + c.toString()).slice(-8_000);
      for (const line of output.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const r = JSON.parse(line) as Record<string, unknown>;
          if ((msg === undefined || r.msg === msg) && typeof r.http === 'string') {
            clearTimeout(timer);
            resolve({ child, http: r.http });
            return;
          }
        } catch {
          // a partial line
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited (${code}) before it was ready:\n${output}`));
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
export async function stopPinned(server: PinnedServer | undefined, graceMs = 5_000): Promise<void> {
  const child = server?.child;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A gateway config: model `linear` on the reference Triton's REST API, one API key read from `keyEnv`. */
export function oneModelGateway(backendHttp: string, keyEnv: string): string {
  return `server: { http: { host: 127.0.0.1, port: 0 }, grpc: { host: 127.0.0.1, port: 0 }, log_level: info }
auth:
  enabled: true
  api_keys:
    - { name: bench, key_env: ${keyEnv}, models: ["*"] }
backends:
  triton: { kind: triton, protocol: rest, endpoints: ["${backendHttp}"], max_connections: 64 }
models:
  linear: { backend: triton, relay: true }
`;
}

/** wrk's script: POST a 1x4 FP32 v2 JSON request with the key; `done` (Lua), when given, prints the results. */
export function postScript(apiKey: string, done = ''): string {
  return `wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer ${apiKey}"
${done}`;
}
