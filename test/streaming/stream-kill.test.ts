// End to end: two `infergate stream` processes share a consumer group in front of the reference Triton; one is
// SIGKILLed mid-stream, and the other takes over its pending events. Every input ends up with an output (or, for
// the poison event, a dead letter), and nothing stays pending.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../helpers/live.js';
import { spawnTritonReference, type ChildServer } from '../helpers/processes.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EVENTS = 2_000;
const INPUT = 'e2e:events';
const OUTPUT = 'e2e:scored';
const DEAD = `${INPUT}:dead`;
const GROUP = 'scorers';
/** The reference linear model, version 2 (the server's choice): SCORES = x·W + b, CLASS = argmax. */
const W = [[0.5, -1, 0.25], [1.5, 0.5, -0.75], [-0.5, 2, 1], [1, -0.25, 0.5]];
const B = [1, 0, -1];

interface StreamChild {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

let redis: RedisServer;
let client: Redis;
let triton: ChildServer;
let dir: string;
const children: StreamChild[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  // Each backend call takes 200 ms, so a consumer always holds unacknowledged events while there is a backlog.
  triton = await spawnTritonReference({ latencyMs: 200 });
  dir = await mkdtemp(join(tmpdir(), 'infergate-stream-'));
}, 60_000);

afterAll(async () => {
  for (const c of children) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await c.exited;
  }
  await triton?.kill('SIGKILL');
  client?.disconnect();
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

/**
 * The node arguments that run `infergate stream ARGS`. Until the CLI routes `stream` (src/cli/main.ts), the
 * command module is run directly, the same way bin/infergate.js runs main.
 */
async function streamArgs(args: string[]): Promise<string[]> {
  const routed = (await readFile(join(ROOT, 'src/cli/main.ts'), 'utf8')).includes("case 'stream'");
  const commandUrl = pathToFileURL(join(ROOT, 'src/cli/stream-command.ts')).href;
  return routed
    ? ['bin/infergate.js', 'stream', ...args]
    : [
        '--import', 'tsx', '--input-type=module', '-e',
        `const { streamCommand } = await import(${JSON.stringify(commandUrl)}); process.exitCode = await streamCommand(process.argv.slice(1));`,
        '--', ...args,
      ];
}

/** `infergate stream ARGS` run to its end (for the ones that fail at once); killed after 60 s. */
async function runStream(args: string[]): Promise<{ status: number | null; stderr: string }> {
  const child = spawn(process.execPath, await streamArgs(args), { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { status: code, stderr };
}

/** `infergate stream ARGS` as a child process; resolves once it logs 'stream processor started'. */
async function spawnStream(args: string[]): Promise<StreamChild> {
  const child = spawn(process.execPath, await streamArgs(args), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const capture = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-64 * 1024);
  };
  child.stdout!.on('data', capture);
  child.stderr!.on('data', capture);
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const running: StreamChild = { child, exited, output: () => output };
  children.push(running);
  await until(() => output.includes('"msg":"stream processor started"') || child.exitCode !== null, 30_000, 'stream processor start');
  if (child.exitCode !== null) throw new Error(`infergate stream exited ${child.exitCode}:\n${output}`);
  return running;
}

/** Entries of the input the group has not read yet (XINFO GROUPS `lag`, Redis 7). */
async function groupLag(): Promise<number> {
  const groups = (await client.xinfo('GROUPS', INPUT)) as unknown[][];
  for (const g of groups) {
    const f = new Map<string, unknown>();
    for (let i = 0; i + 1 < g.length; i += 2) f.set(String(g[i]), g[i + 1]);
    if (f.get('name') === GROUP) return Number(f.get('lag') ?? 0);
  }
  return 0;
}

/** The consumers of the group, by name, with their pending counts. */
async function consumerPending(): Promise<Map<string, number>> {
  const rows = (await client.xinfo('CONSUMERS', INPUT, GROUP)) as unknown[][];
  return new Map(rows.map((r) => [String(r[1]), Number(r[3])]));
}

function fieldsOf(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

describe('infergate stream, two consumers, one killed mid-stream', () => {
  it('delivers every event at least once, dead-letters the poison event, and leaves nothing pending', async () => {
    const file = join(dir, 'stream.yaml');
    await writeFile(
      file,
      [
        'server:',
        '  log_level: info',
        '  request_timeout_ms: 5000',
        'backends:',
        `  triton: { kind: triton, protocol: grpc, endpoints: ["${triton.grpc}"] }`,
        'models:',
        '  linear: { backend: triton }',
        'streams:',
        '  - name: scores',
        `    redis: ${redis.url}`,
        `    input: "${INPUT}"`,
        `    group: ${GROUP}`,
        '    consumer: first',
        `    output: "${OUTPUT}"`,
        '    model: linear',
        "    start_id: '0'",
        '    block_ms: 200',
        '    claim_idle_ms: 1500',
        '    claim_interval_ms: 250',
        '',
      ].join('\n'),
    );
    const first = await spawnStream(['--config', file, '--name', 'scores']);
    // The second from flags (the config supplies the backends), in the same group.
    const second = await spawnStream([
      '--config', file, '--redis', redis.url, '--input', INPUT, '--group', GROUP, '--output', OUTPUT, '--model', 'linear',
      '--consumer', 'second', '--start-id', '0', '--claim-idle-ms', '1500', '--claim-interval-ms', '250',
    ]);

    const ids: string[] = [];
    const records = new Map<string, number[]>();
    let poisonId = '';
    for (let start = 0; start < EVENTS; start += 250) {
      const pipeline = client.pipeline();
      const batch: number[][] = [];
      for (let i = start; i < Math.min(EVENTS, start + 250); i++) {
        const x = [i % 10, 1, 2, 3];
        batch.push(x);
        pipeline.xadd(INPUT, '*', 'data', JSON.stringify({ INPUT0: x }));
      }
      if (start === 1_000) pipeline.xadd(INPUT, '*', 'data', JSON.stringify({ INPUT1: [1, 2, 3, 4] }));
      const results = (await pipeline.exec()) ?? [];
      results.forEach(([err, id], k) => {
        expect(err).toBeNull();
        if (k < batch.length) {
          ids.push(id as string);
          records.set(id as string, batch[k]!);
        } else poisonId = id as string;
      });
    }
    expect(poisonId).not.toBe('');

    // Kill the first consumer while it holds events it has not acknowledged.
    // Mid-stream: events still unread by the group (lag), so the first consumer keeps taking more and still holds
    // some when the kill lands a moment after this check.
    // The consumer is frozen (SIGSTOP) before its pending count is read, so an acknowledgement cannot land between
    // the check and the kill; frozen with nothing pending, it is let go on (SIGCONT) and tried again.
    let orphaned = 0;
    await until(
      async () => {
        if (!((await client.xlen(OUTPUT)) > 100 && (await groupLag()) > 300)) return false;
        first.child.kill('SIGSTOP');
        orphaned = (await consumerPending()).get('first') ?? 0;
        if (orphaned > 0) return true;
        first.child.kill('SIGCONT');
        return false;
      },
      30_000,
      'first consumer busy mid-stream',
    );
    first.child.kill('SIGKILL');
    const killed = await first.exited;
    expect(killed.signal).toBe('SIGKILL');
    expect((await consumerPending()).get('first') ?? 0).toBe(orphaned);

    const missing = (): Promise<string[]> =>
      client.xrange(OUTPUT, '-', '+').then((out) => {
        const seen = new Set(out.map(([, f]) => fieldsOf(f).input_id));
        return ids.filter((id) => !seen.has(id));
      });
    await until(async () => (await client.xlen(OUTPUT)) >= EVENTS && (await missing()).length === 0, 60_000, 'every input has an output', 250);
    await until(async () => (await client.xpending(INPUT, GROUP) as [number])[0] === 0, 10_000, 'nothing pending', 100);

    const outputs = await client.xrange(OUTPUT, '-', '+');
    const byInput = new Map<string, string>();
    for (const [, flat] of outputs) {
      const f = fieldsOf(flat);
      const x = records.get(f.input_id!);
      expect(x, `output for an unknown input ${f.input_id}`).toBeDefined();
      expect(f.model).toBe('linear');
      // A repeated output (a redelivery) is for the same input and says the same.
      const earlier = byInput.get(f.input_id!);
      if (earlier !== undefined) expect(f.outputs).toBe(earlier);
      byInput.set(f.input_id!, f.outputs!);
      const scores = [0, 1, 2].map((j) => x!.reduce((acc, v, k) => acc + v * W[k]![j]!, B[j]!));
      expect(JSON.parse(f.outputs!)).toEqual({ SCORES: scores, CLASS: scores.indexOf(Math.max(...scores)) });
    }
    expect(byInput.size).toBe(EVENTS);
    expect(byInput.has(poisonId)).toBe(false);

    const dead = (await client.xrange(DEAD, '-', '+')).map(([, f]) => fieldsOf(f));
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ input_id: poisonId, stream: INPUT, group: GROUP, error_code: 'INVALID_ARGUMENT', data: '{"INPUT1":[1,2,3,4]}' });

    // The killed consumer's events were taken over by the survivor.
    expect((await consumerPending()).get('first')).toBe(0);
    expect(orphaned).toBeGreaterThan(0);

    // The survivor stops gracefully on SIGTERM.
    second.child.kill('SIGTERM');
    const stopped = await second.exited;
    expect(stopped.code, second.output()).toBe(0);
    expect(second.output()).toMatch(/stream [\w.-]+: in \d+ out \d+ failed \d+ dead-lettered \d+ in-flight 0 lag \d+/);
  }, 150_000);
});

describe('infergate stream, refusing to start', () => {
  const base = ['server: { log_level: silent }', 'backends:', '  t: { kind: triton, protocol: grpc, endpoints: ["127.0.0.1:1"] }', 'models:', '  linear: { backend: t }'];
  const entry = (over: { name?: string; redis?: string; model?: string; extra?: string } = {}) =>
    `  - { name: ${over.name ?? 's1'}, redis: "${over.redis ?? 'redis://127.0.0.1:1'}", input: in, group: g, output: out, model: ${over.model ?? 'linear'}${over.extra ?? ''} }`;

  it('names each problem of the streams section and of the rest of the config, and exits 1', async () => {
    const file = join(dir, 'bad-streams.yaml');
    await writeFile(file, [...base, '  other: { backend: nowhere }', 'streams:', entry({ redis: 'http://x', extra: ', max_in_flight: 0' }), ''].join('\n'));
    const run = await runStream(['--config', file]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('streams.0.redis: must be a redis:// or rediss:// URL');
    expect(run.stderr).toMatch(/streams\.0\.max_in_flight: /);
    expect(run.stderr).toMatch(/models\.other\.backend: unknown backend 'nowhere'/);
  }, 60_000);

  it('exits 1 on an unknown processor name, an unknown model, no streams section, or missing flags', async () => {
    const file = join(dir, 'streams.yaml');
    await writeFile(file, [...base, 'streams:', entry(), entry({ name: 's2' }), ''].join('\n'));
    const absent = join(dir, 'absent-model.yaml');
    await writeFile(absent, [...base, 'streams:', entry(), entry({ name: 's2', model: 'absent' }), ''].join('\n'));
    const plain = join(dir, 'plain.yaml');
    await writeFile(plain, [...base, ''].join('\n'));
    const [unknownName, unknownModel, none, flags] = await Promise.all([
      runStream(['--config', file, '--name', 'nope']),
      runStream(['--config', absent, '--name', 's2']),
      runStream(['--config', plain]),
      runStream(['--config', plain, '--redis', 'redis://127.0.0.1:1', '--input', 'in', '--output', 'out', '--model', 'linear', '--max-in-flight', 'many']),
    ]);
    expect(unknownName.status).toBe(1);
    expect(unknownName.stderr).toContain("no stream processor named 'nope' (its processors: s1, s2)");
    expect(unknownModel.status).toBe(1);
    expect(unknownModel.stderr).toContain("stream processor 's2': model 'absent' is not in the config");
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/the config has no stream processors/);
    expect(flags.status).toBe(1);
    expect(flags.stderr).toContain('--group: is required');
    expect(flags.stderr).toMatch(/--max-in-flight: /);
  }, 90_000);
});
