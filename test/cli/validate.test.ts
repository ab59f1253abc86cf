import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'infergate-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true });
});

function infergate(...args: string[]) {
  return spawnSync(process.execPath, ['bin/infergate.js', ...args], { encoding: 'utf8', timeout: 30_000 });
}

describe('infergate validate', () => {
  it('exits 0 on a valid file and says what it holds', () => {
    const run = infergate('validate', 'config/demo.yaml');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/config\/demo\.yaml: ok \(\d+ models, 4 backends\)/);
  });

  it('exits 1 on a wrong key or type, naming the key path', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      'backends:\n  t: { kind: triton, protocol: grpc, endpoints: ["h:1"], timout_ms: 5 }\nmodels:\n  m: { backend: t, version: 3 }\n',
    );
    const run = infergate('validate', file);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("backends.t: unknown key 'timout_ms'");
    expect(run.stderr).toMatch(/models\.m\.version: /);
  });

  it('exits 1 on a missing file and on no file at all', () => {
    expect(infergate('validate', join(dir, 'absent.yaml')).status).toBe(1);
    expect(infergate('validate').status).toBe(1);
  });

  it('rejects unknown commands with the usage', () => {
    const run = infergate('frobnicate');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(run.stderr).toMatch(/Usage: infergate/);
  });
});
