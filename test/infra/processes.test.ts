import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { freePort, rssBytes, spawnGateway, spawnTritonReference, type ChildServer } from '../helpers/processes.js';

async function ready(endpoint: string): Promise<number> {
  const res = await request(`http://${endpoint}/v2/health/ready`, { headersTimeout: 5000, bodyTimeout: 5000 });
  await res.body.dump();
  return res.statusCode;
}

describe('child process helpers', () => {
  it('freePort gives a loopback port nothing listens on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    await expect(request(`http://127.0.0.1:${port}/`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('spawns the reference Triton, survives SIGKILL, restarts on the same ports', async () => {
    const [httpPort, grpcPort] = [await freePort(), await freePort()];
    const children: ChildServer[] = [];
    try {
      const first = await spawnTritonReference({ httpPort, grpcPort });
      children.push(first);
      expect(first.http).toBe(`127.0.0.1:${httpPort}`);
      expect(first.grpc).toBe(`127.0.0.1:${grpcPort}`);
      expect(await ready(first.http), first.output()).toBe(200);
      expect(await rssBytes(first.pid)).toBeGreaterThan(1024 * 1024);

      expect(await first.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
      expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
      await expect(ready(first.http)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

      const second = await spawnTritonReference({ httpPort, grpcPort });
      children.push(second);
      expect(second.pid).not.toBe(first.pid);
      expect(await ready(`127.0.0.1:${httpPort}`), second.output()).toBe(200);
      expect(await second.kill()).toEqual({ code: 0, signal: null });
    } finally {
      await Promise.all(children.map((c) => c.kill('SIGKILL')));
    }
  });

  it('reports a failed start with the child output', async () => {
    await expect(spawnTritonReference({ extraArgs: ['--bogus', '1'] })).rejects.toThrow(/exited before it was ready[\s\S]*unknown option --bogus/);
  });

  it('spawns the gateway CLI in front of a spawned reference and stops it with SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-proc-'));
    const children: ChildServer[] = [];
    try {
      const triton = await spawnTritonReference();
      children.push(triton);
      const config = join(dir, 'gateway.yaml');
      await writeFile(config, [
        'server:',
        '  http: { host: 127.0.0.1, port: 0 }',
        '  grpc: { host: 127.0.0.1, port: 0 }',
        '  log_level: info',
        'auth: { enabled: false }',
        'backends:',
        '  triton:',
        '    kind: triton',
        '    protocol: grpc',
        `    endpoints: ["${triton.grpc}"]`,
        'models:',
        '  linear: { backend: triton }',
        '',
      ].join('\n'));
      const gateway = await spawnGateway(config);
      children.push(gateway);
      expect(gateway.http).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(gateway.grpc).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(await ready(gateway.http), gateway.output()).toBe(200);

      const infer = await request(`http://${gateway.http}/v2/models/linear/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }),
      });
      expect(infer.statusCode, await infer.body.text()).toBe(200);

      expect(await gateway.kill('SIGTERM'), gateway.output()).toEqual({ code: 0, signal: null });
    } finally {
      await Promise.all(children.map((c) => c.kill('SIGKILL')));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
