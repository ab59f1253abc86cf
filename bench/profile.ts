import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAndCheckWrk, LOAD_CORE, oneModelGateway, postScript, startPinned, stopPinned, type PinnedServer } from './lib/pinned.js';

/**
 * Where Infergate's CPU goes on its hot path: the gateway (its build, auth and metrics on, log_level info) runs
 * under `node --cpu-prof` in front of the reference Triton, pinned to core 1, while wrk (core 0) sends REST JSON
 * inference for PROFILE_S seconds after a warm-up. The profile's samples from the measured window are charged to
 * their owner (the nearest frame in one of our modules or in an npm package; else the V8/Node category) and reported
 * in microseconds per request. Not part of the default `npm run bench`: `npm run bench -- profile`.
 *
 * Sampling inflates small, frequent functions and cannot see into native code, so read it for where the time is
 * spread, with bench/compare.ts for the unprofiled cost.
 */

const WARMUP_S = 5;
const PROFILE_S = 10;
const CONNECTIONS = 64;
const API_KEY = 'bench-profile-key-0123456789abcdef';
const TOP = 30;

export interface ProfileResult {
  readonly requests: number;
  readonly perSecond: number;
  /** Profiled busy time (not idle) per request, in microseconds. */
  readonly busyUsPerRequest: number;
  readonly owners: readonly { readonly owner: string; readonly usPerRequest: number; readonly share: number }[];
  readonly functions: readonly { readonly fn: string; readonly usPerRequest: number; readonly share: number }[];
}

interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time of the samples taken after `fromUs`, charged to each sample's owner and to its own function. */
export function chargeSamples(profile: CpuProfile, fromUs: number): { busyUs: number; owners: Map<string, number>; functions: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  let clock = 0;
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    clock += dt;
    if (clock < fromUs) return;
    const node = byId.get(id)!;
    const name = node.callFrame.functionName;
    if (name === '(idle)') return;
    busyUs += dt;
    let owner: string | undefined;
    for (let cur: number | undefined = id; cur !== undefined && owner === undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)!.callFrame.url;
      owner = /\/(src\/.*)$/.exec(url.replace(/^.*\/dist\//, '/'))?.[1] ?? /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
    }
    owner ??= name.startsWith('(') ? name : 'node internals';
    owners.set(owner, (owners.get(owner) ?? 0) + dt);
    const where = /\/(src\/[^:]*)$/.exec(node.callFrame.url.replace(/^.*\/dist\//, '/'))?.[1] ?? /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(node.callFrame.url)?.[1] ?? (node.callFrame.url.replace(/^node:/, '') || '');
    const fn = `${name || '(anonymous)'}${where !== '' ? ` ${where}` : ''}`;
    functions.set(fn, (functions.get(fn) ?? 0) + dt);
  });
  return { busyUs, owners, functions };
}

export async function run(): Promise<ProfileResult> {
  buildAndCheckWrk();
  const dir = await mkdtemp(join(tmpdir(), 'infergate-bench-profile-'));
  let backend: PinnedServer | undefined;
  let gateway: PinnedServer | undefined;
  try {
    backend = await startPinned(['dist/reference/triton/main.js', '--host', '127.0.0.1'], process.env);
    const config = join(dir, 'gateway.yaml');
    await writeFile(config, oneModelGateway(backend.http, 'INFERGATE_PROFILE_KEY'));
    const started = Date.now();
    const gw = await startPinned(
      ['--cpu-prof', '--cpu-prof-dir', dir, 'dist/infergate.js', 'serve', '--config', config],
      { ...process.env, INFERGATE_PROFILE_KEY: API_KEY },
      'gateway listening',
    );
    gateway = gw;
    const script = join(dir, 'post.lua');
    await writeFile(script, postScript(API_KEY));
    const url = `http://${gw.http}/v2/models/linear/infer`;
    const wrk = (seconds: number): string =>
      spawnSync('taskset', ['-c', LOAD_CORE, 'wrk', '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '-s', script, url], { encoding: 'utf8', timeout: (seconds + 20) * 1000 }).stdout ?? '';
    wrk(WARMUP_S);
    const measuredFrom = Date.now();
    const out = wrk(PROFILE_S);
    const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
    // The profile is written as the process exits: give it time.
    await stopPinned(gateway, 15_000);
    gateway = undefined;
    const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error('the gateway wrote no .cpuprofile');
    const profile = JSON.parse(await readFile(join(dir, file), 'utf8')) as CpuProfile;
    // The profile's clock starts with the process: skip start-up and warm-up.
    const { busyUs, owners, functions } = chargeSamples(profile, (measuredFrom - started) * 1000);
    const rows = (m: Map<string, number>) =>
      [...m]
        .sort((a, b) => b[1] - a[1])
        .slice(0, TOP)
        .map(([k, us]) => ({ key: k, usPerRequest: Math.round((us / requests) * 10) / 10, share: Math.round((us / busyUs) * 1000) / 10 }));
    return {
      requests,
      perSecond: Math.round(requests / PROFILE_S),
      busyUsPerRequest: Math.round((busyUs / requests) * 10) / 10,
      owners: rows(owners).map(({ key, ...r }) => ({ owner: key, ...r })),
      functions: rows(functions).map(({ key, ...r }) => ({ fn: key, ...r })),
    };
  } finally {
    await stopPinned(gateway);
    await stopPinned(backend);
    await rm(dir, { recursive: true, force: true });
  }
}

export function format(result: unknown): string {
  const r = result as ProfileResult;
  return [
    `## Where the gateway's CPU goes: REST JSON, ${CONNECTIONS} connections, ${PROFILE_S} s under node --cpu-prof (${r.perSecond} req/s profiled, ${r.busyUsPerRequest} us busy per request)`,
    '',
    '| owner (our module, npm package, or V8) | us/req | share % |',
    '|---|---:|---:|',
    ...r.owners.map((o) => `| ${o.owner} | ${o.usPerRequest} | ${o.share} |`),
    '',
    '| function (self time) | us/req | share % |',
    '|---|---:|---:|',
    ...r.functions.map((f) => `| ${f.fn} | ${f.usPerRequest} | ${f.share} |`),
  ].join('\n');
}
