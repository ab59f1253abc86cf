import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApplyEvent } from '../../src/config/live-config.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { admin, ADMIN_ENV, ADMIN_KEY, inferVersion, liveText, nextResult, startLiveGateway } from '../helpers/live.js';

type Trigger = 'file' | 'sighup' | 'admin';

describe('live reload', () => {
  let triton: TritonReference;
  let dir: string;
  beforeAll(async () => {
    triton = await startTritonReference();
    dir = await mkdtemp(join(tmpdir(), 'infergate-reload-'));
  });
  afterAll(async () => {
    await triton.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fails no request under steady load while 20 reloads alternate valid and invalid (file, SIGHUP, admin API)', async () => {
    const file = join(dir, 'load.yaml');
    const initial = liveText(triton);
    await writeFile(file, initial);
    const gw = await startLiveGateway(initial, { configFile: file, reloadOnSighup: true });
    const { live } = gw.gateway;
    const load = new Pool(`http://127.0.0.1:${gw.gateway.httpPort}`, { connections: 16 });
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const loop = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await inferVersion(load);
          if (r.status === 200) {
            ok++;
            seen.add(r.version ?? '?');
          } else failures.push(`${r.status} ${r.body}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const started = Date.now();
    const loops = Array.from({ length: 16 }, loop);
    try {
      let expected = '2';
      let version = 1;
      let flip = false;
      for (let i = 0; i < 20; i++) {
        const trigger = (['file', 'sighup', 'admin'] as const)[i % 3] as Trigger;
        const valid = i % 2 === 0;
        let text: string;
        if (valid) {
          // Each valid config flips the model's pinned version and its backend (gRPC / REST): responses show which runs.
          flip = !flip;
          text = liveText(triton, { linearVersion: flip ? '1' : '2', linearBackend: flip ? 'triton-rest' : 'triton-grpc' });
        } else {
          text = liveText(triton, { linearVersion: flip ? '1' : '2', models: `  broken: { backend: nowhere_${i} }` });
        }
        const matches = (e: ApplyEvent): boolean =>
          e.source === (trigger === 'admin' ? 'admin' : 'file') &&
          (trigger !== 'sighup' || e.trigger === 'sighup') &&
          (valid ? e.accepted && !e.unchanged : !e.accepted && e.problems.some((p) => p.includes(`nowhere_${i}`)));
        const result = nextResult(live, matches);
        if (trigger === 'admin') {
          const res = await admin(gw.pool, 'PUT', '/admin/config', text);
          expect(res.status, res.text()).toBe(valid ? 200 : 400);
        } else if (i % 4 < 2) {
          await writeFile(file, text);
        } else {
          // As editors save: a new file renamed over the old one.
          await writeFile(`${file}.tmp`, text);
          await rename(`${file}.tmp`, file);
        }
        if (trigger === 'sighup') process.kill(process.pid, 'SIGHUP');
        const event = await result;
        if (valid) {
          version++;
          expected = flip ? '1' : '2';
          expect(event).toMatchObject({ accepted: true, version });
        }
        expect(live.current.version).toBe(version);
        expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: expected });
      }
      // Steady load for about five seconds in all.
      await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (Date.now() - started))));
      stop = true;
      await Promise.all(loops);
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThan(500);
      expect([...seen].sort()).toEqual(['1', '2']);
      expect(live.current.version).toBe(11);
    } finally {
      stop = true;
      await Promise.all(loops);
      await load.close();
      await gw.close();
    }
  });

  it('reloads the file on SIGHUP (watch off), refuses an invalid one, and removes its handler at close', async () => {
    const file = join(dir, 'sighup.yaml');
    const initial = liveText(triton);
    await writeFile(file, initial);
    const listenersBefore = process.listenerCount('SIGHUP');
    const gw = await startLiveGateway(initial, { configFile: file, reloadOnSighup: true, watchConfigFile: false });
    const { live } = gw.gateway;
    try {
      expect(process.listenerCount('SIGHUP')).toBe(listenersBefore + 1);
      await writeFile(file, liveText(triton, { linearVersion: '1' }));
      await new Promise((r) => setTimeout(r, 400));
      expect(live.current.version).toBe(1); // no watch: the file alone changes nothing

      let result = nextResult(live);
      process.kill(process.pid, 'SIGHUP');
      expect(await result).toMatchObject({ accepted: true, version: 2, trigger: 'sighup', diff: ['~ models.linear.version: 2 -> 1'] });
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '1' });

      await writeFile(file, 'backends: {}\nmodels:\n  linear: { backend: gone }\n');
      result = nextResult(live);
      process.kill(process.pid, 'SIGHUP');
      const rejected = await result;
      expect(rejected).toMatchObject({ accepted: false, trigger: 'sighup' });
      expect(!rejected.accepted && rejected.problems.join('\n')).toMatch(/models\.linear\.backend: unknown backend 'gone'/);
      expect(live.current.version).toBe(2);
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '1' });

      // A missing file is refused the same way.
      await rm(file);
      expect(await gw.gateway.reloadFromFile()).toMatchObject({ accepted: false });
      expect(live.current.version).toBe(2);
    } finally {
      await gw.close();
    }
    expect(process.listenerCount('SIGHUP')).toBe(listenersBefore);
  });

  it('`infergate serve` reloads on SIGHUP and on file change, and serves the admin API', async () => {
    const file = join(dir, 'cli.yaml');
    await writeFile(file, liveText(triton, { logLevel: 'info' }));
    const child = spawn(process.execPath, ['bin/infergate.js', 'serve', '--config', file], {
      env: { ...process.env, ...ADMIN_ENV, INFERGATE_HTTP_PORT: '0', INFERGATE_GRPC_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: Record<string, unknown>[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line
        }
      }
    });
    const waitLog = async (match: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> => {
      const start = Date.now();
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${stderr}`);
        if (Date.now() - start > 20_000) throw new Error(`no log '${what}': ${JSON.stringify(logs)} ${stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    let pool: Pool | undefined;
    try {
      const listening = await waitLog((l) => l.msg === 'gateway listening', 'gateway listening');
      pool = new Pool(`http://${String(listening.http)}`);
      expect(await inferVersion(pool)).toMatchObject({ status: 200, version: '2' });

      // SIGHUP with the file as it is: the process lives on (SIGHUP's default would end it) and says so.
      child.kill('SIGHUP');
      await waitLog((l) => l.msg === 'config unchanged' && l.trigger === 'sighup', 'config unchanged');

      await writeFile(file, liveText(triton, { logLevel: 'info', linearVersion: '1' }));
      child.kill('SIGHUP');
      const applied = await waitLog((l) => l.msg === 'config applied' && l.version === 2, 'config applied');
      expect(applied).toMatchObject({ source: 'file', diff: ['~ models.linear.version: 2 -> 1'] });
      expect(await inferVersion(pool)).toMatchObject({ status: 200, version: '1' });

      // The watch alone picks up the next save.
      await writeFile(file, liveText(triton, { logLevel: 'info', linearVersion: '2', models: '  broken: { backend: nowhere }' }));
      const rejected = await waitLog((l) => l.msg === 'config change rejected; the running config stays', 'rejected');
      expect(rejected).toMatchObject({ source: 'file', trigger: 'file change' });
      expect(JSON.stringify(rejected.problems)).toMatch(/unknown backend 'nowhere'/);

      const view = await admin(pool, 'GET', '/admin/config', undefined, ADMIN_KEY);
      expect(view.status).toBe(200);
      expect(view.json()).toMatchObject({ version: 2, source: 'file' });

      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
    } finally {
      await pool?.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
