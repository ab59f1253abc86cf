import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/load.js';

const VALID = `
backends:
  triton:
    kind: triton
    protocol: grpc
    endpoints: ["127.0.0.1:8001"]
models:
  linear: { backend: triton }
  old: { backend: triton, model: linear, version: "1" }
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'test.yaml', env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected the config to be rejected');
}

describe('config loading', () => {
  it('parses a valid file into typed values with defaults', () => {
    const config = parseConfig(VALID);
    expect(config.server.http).toEqual({ host: '0.0.0.0', port: 8000 });
    expect(config.server.grpc.port).toBe(8001);
    expect(config.server.max_body_bytes).toBe(64 * 1024 * 1024);
    expect(config.backends.triton).toMatchObject({ kind: 'triton', protocol: 'grpc', timeout_ms: 30000, max_connections: 64 });
    expect(config.models.old).toEqual({ backend: 'triton', model: 'linear', version: '1' });
  });

  it('names the key path of an unknown key', () => {
    const bad = VALID.replace('protocol: grpc', 'protocol: grpc\n    timeout: 5');
    expect(problems(bad)).toEqual([expect.stringMatching(/^backends\.triton: unknown key 'timeout'/)]);
  });

  it('names the key path of a value of the wrong type', () => {
    expect(problems(VALID.replace('protocol: grpc', 'protocol: http2'))[0]).toMatch(/^backends\.triton\.protocol: /);
    expect(problems(`server: { http: { port: "eighty" } }\n${VALID}`)[0]).toMatch(/^server\.http\.port: /);
    expect(problems(VALID.replace('["127.0.0.1:8001"]', '["not an address"]'))[0]).toMatch(/^backends\.triton\.endpoints\.0: must be host:port/);
  });

  it('rejects a model on an unknown backend, naming both', () => {
    expect(problems(VALID.replace('linear: { backend: triton }', 'linear: { backend: trtion }'))).toEqual([
      expect.stringMatching(/^models\.linear\.backend: unknown backend 'trtion' \(declared: triton\)/),
    ]);
  });

  it('rejects invalid model names and versions', () => {
    expect(problems(VALID.replace('linear: {', '"a/b": {'))[0]).toMatch(/^models\.a\/b: is not a valid model name/);
    expect(problems(VALID.replace('version: "1"', 'version: "../1"'))[0]).toMatch(/^models\.old\.version: /);
  });

  it('reports every problem at once', () => {
    const bad = VALID.replace('protocol: grpc', 'protocol: nope').replace('linear: { backend: triton }', 'linear: { backend: x }');
    expect(problems(bad)).toHaveLength(2);
  });

  it('reports YAML syntax errors and duplicate keys', () => {
    expect(problems('models: [unclosed')[0]).toMatch(/^YAML: /);
    // A duplicate is named by its key path and the line of the first one.
    expect(problems(`${VALID}\n  linear: { backend: triton }\n`)).toEqual(['models.linear: duplicate key (first at line 8)']);
  });

  it('applies environment overrides for ports and endpoints', () => {
    const config = parseConfig(VALID, 'x', {
      INFERGATE_HTTP_PORT: '9000',
      INFERGATE_GRPC_HOST: '127.0.0.1',
      INFERGATE_BACKEND_TRITON_ENDPOINTS: '10.0.0.1:8001, 10.0.0.2:8001',
    });
    expect(config.server.http.port).toBe(9000);
    expect(config.server.grpc).toEqual({ host: '127.0.0.1', port: 8001 });
    expect(config.backends.triton!.endpoints).toEqual([
      { address: '10.0.0.1:8001', weight: 1 },
      { address: '10.0.0.2:8001', weight: 1 },
    ]);
    expect(problems(VALID, { INFERGATE_HTTP_PORT: 'x' })[0]).toMatch(/^server\.http\.port: /);
  });

  it('reads from a file and says when it cannot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'infergate-config-'));
    try {
      await writeFile(join(dir, 'ok.yaml'), VALID);
      expect(Object.keys((await loadConfigFile(join(dir, 'ok.yaml'), {})).models)).toEqual(['linear', 'old']);
      await expect(loadConfigFile(join(dir, 'missing.yaml'), {})).rejects.toThrow(/cannot read file/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('the shipped configs are valid', async () => {
    for (const file of ['config/gateway.yaml', 'config/demo.yaml']) {
      await expect(loadConfigFile(file, {})).resolves.toBeDefined();
    }
  });
});
