import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { STATUS_PAGE_CSP } from '../../src/api/http/status-page/index.js';
import { call } from '../helpers/http.js';
import { admin, liveText, nextResult, startLiveGateway, type LiveGateway } from '../helpers/live.js';

/** The status page's routes on the admin API: GET /admin/routes (keyed) and the page's shell (public). */
describe('admin API: routes view and status page shell', () => {
  let triton: TritonReference;
  let gw: LiveGateway;
  let text: string;
  beforeAll(async () => {
    triton = await startTritonReference();
    text = liveText(triton, {
      models: `  split:
    weighted:
      - { weight: 70, backend: triton-grpc, model: linear }
      - { weight: 30, backend: triton-rest, model: linear, id: split-canary }`,
    });
    gw = await startLiveGateway(text, { instanceId: 'status-page-test' });
  });
  afterAll(async () => {
    await gw.close();
    await triton.close();
  });

  it('GET /admin/routes needs the key', async () => {
    expect((await admin(gw.pool, 'GET', '/admin/routes', undefined, null)).status).toBe(401);
    expect((await admin(gw.pool, 'GET', '/admin/routes', undefined, 'wrong')).status).toBe(401);
  });

  it('GET /admin/routes shows the running config\'s trees, and follows a config change', async () => {
    const res = await admin(gw.pool, 'GET', '/admin/routes');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const view = res.json<{ version: number; models: { name: string; tree: unknown }[]; experiments: unknown[] }>();
    expect(view.version).toBe(1);
    expect(view.experiments).toEqual([]);
    expect(view.models.find((m) => m.name === 'split')!.tree).toEqual({
      kind: 'weighted',
      children: [
        { weight: 70, share: 0.7, node: { kind: 'leaf', id: 'models.split.weighted.0', backend: 'triton-grpc', model: 'linear', version: null } },
        { weight: 30, share: 0.3, node: { kind: 'leaf', id: 'split-canary', backend: 'triton-rest', model: 'linear', version: null } },
      ],
    });

    const applied = nextResult(gw.gateway.live, (e) => e.accepted);
    const put = await admin(gw.pool, 'PUT', '/admin/config', text.replace('weight: 70', 'weight: 90').replace('weight: 30', 'weight: 10'));
    expect(put.status).toBe(200);
    await applied;
    const after = (await admin(gw.pool, 'GET', '/admin/routes')).json<{ version: number; models: { name: string; tree: { children: { weight: number; share: number }[] } }[] }>();
    expect(after.version).toBe(2);
    expect(after.models.find((m) => m.name === 'split')!.tree.children.map((c) => [c.weight, c.share])).toEqual([
      [90, 0.9],
      [10, 0.1],
    ]);
  });

  it('serves the page without a key, with a strict CSP, no inline code and revalidation', async () => {
    const res = await call(gw.pool, 'GET', '/admin/ui');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toBe(STATUS_PAGE_CSP);
    expect(STATUS_PAGE_CSP).toMatch(/(^|; )script-src 'self'(;|$)/);
    expect(STATUS_PAGE_CSP).toContain("frame-ancestors 'none'");
    expect(STATUS_PAGE_CSP).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['cache-control']).toBe('no-cache');
    const html = res.text();
    // Every script is a file; no inline script, handler or style attribute (the CSP would refuse them anyway).
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBe(1);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/src="ui\/[0-9a-f]{16}\/app\.js"/);
      expect(body!.trim()).toBe('');
    }
    expect(html).not.toMatch(/\son[a-z]+=|\sstyle=|<style/i);
    // The shell carries no data (and no key).
    expect(html).not.toContain('triton');
  });

  it('serves assets under a digest of their contents: kept a year, and refreshed when the digest is old', async () => {
    const html = (await call(gw.pool, 'GET', '/admin/ui')).text();
    const digest = /ui\/([0-9a-f]{16})\/app\.js/.exec(html)![1]!;
    for (const [file, type] of [
      ['app.js', 'text/javascript; charset=utf-8'],
      ['prometheus-text.js', 'text/javascript; charset=utf-8'],
      ['traffic-series.js', 'text/javascript; charset=utf-8'],
      ['line-chart.js', 'text/javascript; charset=utf-8'],
      ['style.css', 'text/css; charset=utf-8'],
    ] as const) {
      const res = await call(gw.pool, 'GET', `/admin/ui/${digest}/${file}`);
      expect(res.status, file).toBe(200);
      expect(res.headers['content-type'], file).toBe(type);
      expect(res.headers['cache-control'], file).toBe('public, max-age=31536000, immutable');
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.body.length).toBeGreaterThan(100);
    }
    const stale = await call(gw.pool, 'GET', '/admin/ui/0000000000000000/app.js');
    expect(stale.status).toBe(200);
    expect(stale.headers['cache-control']).toBe('no-cache');
    // Only the page's own files: no path into the source tree.
    for (const path of [`/admin/ui/${digest}/index.ts`, `/admin/ui/${digest}/..%2Findex.ts`, `/admin/ui/${digest}/app.js/x`, '/admin/ui/nothing']) {
      expect((await call(gw.pool, 'GET', path)).status, path).toBe(404);
    }
    const slash = await call(gw.pool, 'GET', '/admin/ui/');
    expect(slash.status).toBe(308);
    expect(slash.headers.location).toBe('../ui');
    expect((await call(gw.pool, 'POST', '/admin/ui', '{}')).status).toBe(405);
  });
});
