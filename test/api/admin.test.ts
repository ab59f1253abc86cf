import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { admin, ADMIN_KEY, inferVersion, liveText, startLiveGateway, type LiveGateway } from '../helpers/live.js';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

interface ConfigView {
  version: number;
  source: string;
  applied_at: string;
  config_text: string;
  restart_pending: string[];
  instances: { id: string; version: number; seen_at: string }[];
}

describe('admin API', () => {
  let triton: TritonReference;
  beforeAll(async () => {
    triton = await startTritonReference();
  });
  afterAll(async () => {
    await triton.close();
  });

  describe('with a key from the environment', () => {
    let gw: LiveGateway;
    let text: string;
    beforeAll(async () => {
      text = liveText(triton);
      gw = await startLiveGateway(text, { instanceId: 'admin-test' });
    });
    afterAll(async () => {
      await gw.close();
    });

    it('answers 401 without a key and with a wrong one', async () => {
      for (const [key, message] of [
        [null, /Authorization: Bearer/],
        ['wrong', /invalid admin API key/],
        ['', /Authorization: Bearer/],
      ] as const) {
        for (const [method, path] of [['GET', '/admin/config'], ['PUT', '/admin/config'], ['POST', '/admin/config/validate']] as const) {
          const res = await admin(gw.pool, method, path, method === 'GET' ? undefined : text, key);
          expect(res.status, `${method} ${path} key=${key}`).toBe(401);
          expect(res.json<{ error: string }>().error).toMatch(message);
          expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        }
      }
      // A key that only starts like the real one is no better.
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, `${ADMIN_KEY}x`)).status).toBe(401);
      expect(gw.gateway.live.current.version).toBe(1);
    });

    it('GET shows the running config, its version and the instances', async () => {
      const res = await admin(gw.pool, 'GET', '/admin/config');
      expect(res.status).toBe(200);
      expect(res.headers['x-request-id']).toBeTruthy();
      const view = res.json<ConfigView>();
      expect(view).toMatchObject({ version: 1, source: 'startup', config_text: text, restart_pending: [] });
      expect(Date.parse(view.applied_at)).toBeGreaterThan(0);
      expect(view.instances).toEqual([{ id: 'admin-test', version: 1, seen_at: expect.any(String) }]);
    });

    it('dry run validates and diffs without applying', async () => {
      const next = liveText(triton, { linearVersion: '1' });
      for (const [method, path] of [['PUT', '/admin/config?dry_run=true'], ['POST', '/admin/config/validate']] as const) {
        const res = await admin(gw.pool, method, path, next);
        expect(res.status).toBe(200);
        expect(res.json()).toEqual({ valid: true, problems: [], diff: ['~ models.linear.version: 2 -> 1'], restart: [] });
        const bad = await admin(gw.pool, method, path, next.replace('kind: triton, protocol: rest', 'kind: tritn, protocol: rest'));
        expect(bad.status).toBe(200);
        const body = bad.json<{ valid: boolean; problems: string[] }>();
        expect(body.valid).toBe(false);
        expect(body.problems.join('\n')).toMatch(/backends\.triton-rest\.kind/);
      }
      expect(gw.gateway.live.current.version).toBe(1);
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '2' });
    });

    it('PUT applies a valid config (200, version and diff) and refuses an invalid one (400, every problem)', async () => {
      const next = liveText(triton, { linearVersion: '1' });
      const res = await admin(gw.pool, 'PUT', '/admin/config', next);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ version: 2, diff: ['~ models.linear.version: 2 -> 1'], restart: [], unchanged: false });
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '1' });
      const view = (await admin(gw.pool, 'GET', '/admin/config')).json<ConfigView>();
      expect(view).toMatchObject({ version: 2, source: 'admin', config_text: next });
      expect(view.instances[0]?.version).toBe(2);

      const invalid = next.replace('version: "1"', 'version: "1", colour: blue').replace('simple: { backend: triton-grpc }', 'simple: { backend: nowhere }');
      const bad = await admin(gw.pool, 'PUT', '/admin/config', invalid);
      expect(bad.status).toBe(400);
      const body = bad.json<{ error: string; problems: string[] }>();
      expect(body.error).toMatch(/invalid config/);
      expect(body.problems).toHaveLength(2);
      expect(body.problems.join('\n')).toMatch(/models\.linear.*colour/);
      expect(body.problems.join('\n')).toMatch(/models\.simple\.backend.*nowhere/);
      expect(gw.gateway.live.current.version).toBe(2);
      expect(await inferVersion(gw.pool)).toMatchObject({ status: 200, version: '1' });

      // JSON is YAML too.
      const json = JSON.stringify({
        server: { http: { host: '127.0.0.1', port: 0 }, grpc: { host: '127.0.0.1', port: 0 }, request_timeout_ms: 5000, max_body_bytes: 1048576, log_level: 'silent' },
        auth: { enabled: false },
        backends: {
          'triton-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] },
          'triton-rest': { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint] },
        },
        models: { linear: { backend: 'triton-grpc', version: '2' }, simple: { backend: 'triton-grpc' } },
      });
      const fromJson = await admin(gw.pool, 'PUT', '/admin/config', json);
      expect(fromJson.status).toBe(200);
      expect(fromJson.json()).toMatchObject({ version: 3, diff: ['~ models.linear.version: 1 -> 2'] });
    });

    it('answers 405 to other methods, 404 to unknown admin paths and 413 to a body over the server limit', async () => {
      expect((await admin(gw.pool, 'DELETE', '/admin/config')).status).toBe(405);
      expect((await admin(gw.pool, 'GET', '/admin/config/validate')).status).toBe(405);
      expect((await admin(gw.pool, 'GET', '/admin/nothing')).status).toBe(404);
      const huge = `# ${'x'.repeat(2 * 1024 * 1024)}\n`;
      const res = await admin(gw.pool, 'PUT', '/admin/config', huge);
      expect(res.status).toBe(413);
      expect(res.json<{ error: string }>().error).toMatch(/max_body_bytes/);
    });
  });

  it('accepts keys listed as SHA-256 digests, and a change of keys applies live', async () => {
    const listed = 'listed-key';
    const text = liveText(triton, { extra: `admin:\n  api_key_sha256: ["${sha256(listed)}"]\n  api_key_env: OTHER_ADMIN_KEY` });
    const gw = await startLiveGateway(text, { env: { OTHER_ADMIN_KEY: 'from-env' } });
    try {
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, listed)).status).toBe(200);
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, 'from-env')).status).toBe(200);
      // INFERGATE_ADMIN_KEY is not the variable this config names.
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, ADMIN_KEY)).status).toBe(401);
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, sha256(listed))).status).toBe(401);

      const rotated = liveText(triton, { extra: `admin:\n  api_key_sha256: ["${sha256('new-key')}"]\n  api_key_env: UNSET_VARIABLE` });
      const res = await admin(gw.pool, 'PUT', '/admin/config', rotated, listed);
      expect(res.status).toBe(200);
      expect(res.json<{ diff: string[] }>().diff).toEqual([
        `~ admin.api_key_sha256: ["${sha256(listed)}"] -> ["${sha256('new-key')}"]`,
        '~ admin.api_key_env: OTHER_ADMIN_KEY -> UNSET_VARIABLE',
      ]);
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, listed)).status).toBe(401);
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, 'from-env')).status).toBe(401);
      expect((await admin(gw.pool, 'GET', '/admin/config', undefined, 'new-key')).status).toBe(200);
    } finally {
      await gw.close();
    }
  });

  it('answers 403 when no admin key is configured at all', async () => {
    const gw = await startLiveGateway(liveText(triton), { env: {} });
    try {
      for (const key of [null, 'anything']) {
        const res = await admin(gw.pool, 'GET', '/admin/config', undefined, key);
        expect(res.status).toBe(403);
        expect(res.json()).toEqual({
          error: 'admin API disabled: configure admin.api_key_sha256, set INFERGATE_ADMIN_KEY, or give an auth.api_keys entry admin: true',
        });
        expect((await admin(gw.pool, 'PUT', '/admin/config', liveText(triton, { linearVersion: '1' }), key)).status).toBe(403);
      }
      expect(gw.gateway.live.current.version).toBe(1);
      // An empty variable is no key either.
    } finally {
      await gw.close();
    }
    const empty = await startLiveGateway(liveText(triton), { env: { INFERGATE_ADMIN_KEY: '' } });
    try {
      expect((await admin(empty.pool, 'GET', '/admin/config', undefined, '')).status).toBe(403);
    } finally {
      await empty.close();
    }
  });
});
