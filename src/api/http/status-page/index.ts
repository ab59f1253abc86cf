import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Hono } from 'hono';
import type { HttpEnv } from '../context.js';

/**
 * The status page (GET /admin/ui): static HTML, CSS and plain ES modules from
 * this folder, read once when the admin API is built, no build step. The
 * shell holds no data and needs no key: the page asks for the admin key,
 * keeps it in the tab's sessionStorage and sends it as a bearer token with
 * every data request (the admin API, /metrics, the experiment results).
 *
 * Assets are served under a digest of their contents (/admin/ui/<digest>/app.js),
 * so they are cached for a year and a new gateway version is picked up at the
 * next page load; the page itself is revalidated every time.
 */

const ASSETS: Readonly<Record<string, string>> = {
  'app.js': 'text/javascript; charset=utf-8',
  'prometheus-text.js': 'text/javascript; charset=utf-8',
  'traffic-series.js': 'text/javascript; charset=utf-8',
  'line-chart.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** Scripts and styles from this origin only, no inline code, data from this origin only, never in a frame. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': STATUS_PAGE_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
} as const;

const IMMUTABLE = 'public, max-age=31536000, immutable';

interface StatusPageFiles {
  readonly html: string;
  readonly digest: string;
  readonly assets: ReadonlyMap<string, Buffer>;
}

function loadFiles(): StatusPageFiles {
  const read = (name: string): Buffer => readFileSync(new URL(`./${name}`, import.meta.url));
  const assets = new Map(Object.keys(ASSETS).map((name) => [name, read(name)]));
  const hash = createHash('sha256');
  for (const [name, body] of assets) hash.update(name).update('\u0000').update(body).update('\u0000');
  const digest = hash.digest('hex').slice(0, 16);
  const html = read('index.html').toString('utf8').replaceAll('{{assets}}', digest);
  return { html, digest, assets };
}

/**
 * Adds the page's routes to the admin app (mounted at /admin), ahead of its
 * key check: GET /ui, /ui/<digest>/<asset>; /ui/ redirects to /ui.
 */
export function registerStatusPage(app: Hono<HttpEnv>): void {
  const files = loadFiles();
  app.get('/ui', (c) => c.body(files.html, 200, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' }));
  // Relative: right behind a proxy that mounts the gateway under a prefix too.
  app.get('/ui/', (c) => c.body(null, 308, { location: '../ui' }));
  app.get('/ui/:digest/:file', (c) => {
    const file = c.req.param('file');
    const body = files.assets.get(file);
    if (body === undefined) return c.json({ error: `no status page asset '${file}'` }, 404, SECURITY_HEADERS);
    // A page loaded before an upgrade asks for the old digest: it gets today's file, not kept.
    const cache = c.req.param('digest') === files.digest ? IMMUTABLE : 'no-cache';
    return c.body(new Uint8Array(body), 200, { ...SECURITY_HEADERS, 'content-type': ASSETS[file]!, 'cache-control': cache });
  });
  app.on(['POST', 'PUT', 'PATCH', 'DELETE'], '/ui', (c) => c.json({ error: `method ${c.req.method} is not allowed on /admin/ui; use GET` }, 405, { allow: 'GET' }));
  app.all('/ui/*', (c) => c.json({ error: 'not found' }, 404, SECURITY_HEADERS));
}
