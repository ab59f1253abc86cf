import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import { parseConfig } from '../../src/config/load.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { STATUS_PAGE_CSP } from '../../src/api/http/status-page/index.js';

/**
 * The status page in a real browser (Debian's chromium, headless) against a real gateway in front of two
 * reference Tritons, all on loopback. The README's screenshot is rewritten only with UPDATE_SCREENSHOT=1;
 * otherwise it goes to the temp dir, so a test run never dirties the tree.
 */

// Browser globals of the functions that run in the page (evaluate, waitForFunction): the project's tsconfig has no DOM lib.
declare const document: {
  querySelector(selector: string): { textContent: string | null; getAttribute(name: string): string | null } | null;
  getElementById(id: string): { textContent: string | null } | null;
  dispatchEvent(event: unknown): boolean;
};
declare const sessionStorage: { getItem(key: string): string | null };
declare const Event: new (type: string) => unknown;

const CHROMIUM = process.env.INFERGATE_CHROMIUM ?? '/usr/bin/chromium';
const KEY = 'status-page-test-key';
/** The key the traffic generator calls the models with. */
const CLIENT_KEY = 'status-page-client-key';
const WAIT_MS = 15_000;
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOT === '1'
    ? join(import.meta.dirname, '../../docs/status-page.png')
    : join(tmpdir(), 'infergate-status-page.png');
const LINEAR_REQUEST = '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}';

function configText(a: TritonReference, b: TritonReference): string {
  return `server:
  http: { host: 127.0.0.1, port: 0 }
  grpc: { host: 127.0.0.1, port: 0 }
  request_timeout_ms: 2000
  log_level: silent
backends:
  triton-a:
    kind: triton
    protocol: rest
    endpoints: ["${a.httpEndpoint}"]
    health_check: { interval_ms: 200, timeout_ms: 200, unhealthy_after: 1 }
  triton-b:
    kind: triton
    protocol: grpc
    endpoints: ["${b.grpcEndpoint}"]
    health_check: { interval_ms: 200, timeout_ms: 200, unhealthy_after: 1 }
models:
  linear:
    weighted:
      - { weight: 70, backend: triton-a }
      - { weight: 30, backend: triton-b, id: linear-canary }
  ranker: { backend: triton-a, model: linear }
  scorer:
    fallback: [ { backend: triton-b, model: linear }, { backend: triton-a, model: linear } ]
auth:
  api_keys:
    # The admin key (INFERGATE_ADMIN_KEY) listed with models too: the experiment results need the model's scope.
    - { name: ops, key_env: INFERGATE_ADMIN_KEY, models: ["*"] }
    - { name: traffic, key_env: STATUS_PAGE_CLIENT_KEY, models: ["*"] }
experiments:
  ranker-ab:
    model: ranker
    key: { header: x-user-id }
    control: a
    arms:
      a: { weight: 50, backend: triton-a, model: linear }
      b: { weight: 50, backend: triton-b, model: linear }
`;
}

/** Requests to every model until stopped, a few at a time: the page's charts and counters need traffic. */
function driveTraffic(pool: Pool): { stop(): Promise<void>; answered(): number } {
  let running = true;
  let answered = 0;
  const worker = async (n: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const model = ['linear', 'ranker', 'scorer'][i % 3]!;
      try {
        const res = await pool.request({
          method: 'POST',
          path: `/v2/models/${model}/infer`,
          headers: { 'content-type': 'application/json', 'x-user-id': `user-${n}-${i % 17}`, authorization: `Bearer ${CLIENT_KEY}` },
          body: LINEAR_REQUEST,
        });
        await res.body.dump();
        if (res.statusCode === 200) answered++;
      } catch {
        // The gateway closing under the loop at the end.
      }
      await sleep(15);
    }
  };
  const workers = [worker(0), worker(1)];
  return {
    async stop() {
      running = false;
      await Promise.all(workers);
    },
    answered: () => answered,
  };
}

/**
 * Waits until the number in the element `selector` is above `min`. A function, not a string: the page's CSP
 * (no 'unsafe-eval') refuses predicates given as text.
 */
async function waitForNumberAbove(page: Page, selector: string, min = 0): Promise<void> {
  await page.waitForFunction(([sel, m]) => Number(document.querySelector(sel)?.textContent ?? 'NaN') > m, [selector, min] as const);
}

describe('status page (GET /admin/ui) in a browser', () => {
  let tritonA: TritonReference;
  let tritonB: TritonReference;
  let gateway: RunningGateway;
  let pool: Pool;
  let traffic: ReturnType<typeof driveTraffic>;
  let browser: Browser;
  let page: Page;
  let base: string;
  const consoleMessages: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium; .ci/run does)`);
    tritonA = await startTritonReference({ host: '127.0.0.1' });
    tritonB = await startTritonReference({ host: '127.0.0.1' });
    const text = configText(tritonA, tritonB);
    const env = { INFERGATE_ADMIN_KEY: KEY, STATUS_PAGE_CLIENT_KEY: CLIENT_KEY };
    gateway = await startGateway(parseConfig(text, 'status-page test', env), silentLogger, { configText: text, env });
    base = `http://127.0.0.1:${gateway.httpPort}`;
    pool = new Pool(base, { connections: 4 });
    traffic = driveTraffic(pool);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 20_000,
    });
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('console', (m) => consoleMessages.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (err) => consoleMessages.push(`pageerror: ${err.message}`));
  }, 60_000);

  afterAll(async () => {
    await traffic?.stop();
    await browser?.close();
    await pool?.close();
    await gateway?.close(500);
    await tritonA?.close();
    await tritonB?.close();
  }, 30_000);

  it('serves a public shell with a strict CSP that asks for the key, and refuses a wrong key', async () => {
    const res = await page.goto(`${base}/admin/ui`);
    expect(res?.status()).toBe(200);
    const headers = res!.headers();
    expect(headers['content-security-policy']).toBe(STATUS_PAGE_CSP);
    expect(headers['content-security-policy']).toContain("script-src 'self'");
    expect(headers['x-frame-options']).toBe('DENY');
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.isHidden('#dashboard')).toBe(true);

    await page.fill('#key', 'not-the-key');
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => /enter the admin key again/.test(document.getElementById('login-error')?.textContent ?? ''));
    expect(await page.isHidden('#dashboard')).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem('infergate.adminKey'))).toBeNull();
  });

  it('shows routes with weights, the experiment split and healthy backends once the key is in', async () => {
    const dataRequests: { url: string; auth: string | undefined }[] = [];
    page.on('request', (r) => {
      if (!r.url().includes('/admin/ui')) dataRequests.push({ url: r.url(), auth: r.headers()['authorization'] });
    });
    await page.fill('#key', KEY);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#dashboard:not([hidden])');
    expect(await page.isHidden('#login')).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem('infergate.adminKey'))).toBe(KEY);
    // Every data request carries the key as a bearer token, never in the URL.
    expect(dataRequests.length).toBeGreaterThanOrEqual(4);
    for (const r of dataRequests) {
      expect(r.auth, r.url).toBe(`Bearer ${KEY}`);
      expect(r.url).not.toContain(KEY);
    }

    // Routes: the weighted split of `linear` with its weights and shares, the fallback of `scorer`.
    const split = page.locator('article.route[data-model="linear"] li[data-weight]');
    await expect.poll(() => split.count()).toBe(2);
    expect(await split.nth(0).getAttribute('data-weight')).toBe('70');
    expect(await split.nth(0).innerText()).toMatch(/70%[\s\S]*weight 70[\s\S]*triton-a/);
    expect(await split.nth(1).innerText()).toMatch(/30%[\s\S]*weight 30[\s\S]*triton-b[\s\S]*linear-canary/);
    expect(await page.locator('article.route[data-model="scorer"]').innerText()).toMatch(/fallback[\s\S]*triton-b[\s\S]*triton-a/);
    expect(await page.locator('article.route[data-model="ranker"]').innerText()).toContain('experiment ranker-ab');

    // The experiment: running, both arms at 50, the split bar, and request counts from the results API.
    const exp = page.locator('article.experiment[data-experiment="ranker-ab"]');
    expect(await exp.getAttribute('data-state')).toBe('running');
    for (const arm of ['a', 'b']) {
      const row = exp.locator(`tr[data-arm="${arm}"]`);
      expect(await row.getAttribute('data-weight')).toBe('50');
      expect(await row.getAttribute('data-effective-weight')).toBe('50');
      expect(await row.locator('[data-field=weight]').innerText()).toBe('50 (50%)');
    }
    expect(await exp.locator('.split').innerText()).toMatch(/a 50%\s*b 50%/);
    for (const arm of ['a', 'b']) {
      await waitForNumberAbove(page, `article.experiment[data-experiment="ranker-ab"] tr[data-arm="${arm}"] [data-field=requests]`);
    }

    // Backends: both healthy, endpoints in rotation, breakers closed, models ready.
    for (const name of ['triton-a', 'triton-b']) {
      const backend = page.locator(`article.backend[data-backend="${name}"]`);
      await page.waitForSelector(`article.backend[data-backend="${name}"][data-health="healthy"]`);
      expect(await backend.locator('tr[data-endpoint]').getAttribute('data-ejected')).toBe('false');
      expect(await backend.locator('tr[data-endpoint]').getAttribute('data-breaker')).toBe('closed');
      expect(await backend.locator('tr[data-ready="ready"]').count()).toBeGreaterThan(0);
    }
  });

  it('draws live traffic from /metrics: requests/s and latency per model and per arm', async () => {
    // Two scrapes with traffic between them make a point; wait for a few.
    await page.waitForFunction(
      () => {
        const path = document.querySelector('[data-chart="Requests"] path.series[data-series="linear"]');
        return Number(path?.getAttribute('data-points') ?? 0) >= 2;
      },
      undefined,
      { timeout: WAIT_MS },
    );
    await waitForNumberAbove(page, '#traffic-table tr[data-series="linear"] [data-field=rps]');
    await waitForNumberAbove(page, '#traffic-table tr[data-series="ranker/b"] [data-field=rps]');
    const p50 = await page.locator('#traffic-table tr[data-series="linear"] [data-field=p50]').innerText();
    expect(Number(p50)).toBeGreaterThan(0);
    // Every chart has a line for the model.
    for (const chart of ['Requests', 'Latency p50', 'Latency p99']) {
      expect(await page.locator(`[data-chart="${chart}"] path.series[data-series="linear"]`).count(), chart).toBe(1);
    }
  });

  it('pauses while the tab is hidden and resumes when it is shown', async () => {
    let configReads = 0;
    const onRequest = (r: { url(): string }): void => {
      if (r.url().endsWith('/admin/config')) configReads++;
    };
    page.on('request', onRequest);
    const setHidden = (hidden: boolean): Promise<void> =>
      page.evaluate((h) => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
        document.dispatchEvent(new Event('visibilitychange'));
      }, hidden);
    await setHidden(true);
    await page.waitForFunction(() => /paused/.test(document.getElementById('status')?.textContent ?? ''));
    // A round already under way may finish; none starts after it. Two refresh periods show it.
    await sleep(300);
    const before = configReads;
    await sleep(3_000);
    expect(configReads).toBe(before);
    await setHidden(false);
    await page.waitForRequest((r) => r.url().endsWith('/admin/config'), { timeout: 5_000 });
    page.off('request', onRequest);
  });

  it('shows a backend going down: ejected by its health checks, its models not ready', async () => {
    await tritonB.close();
    await page.waitForSelector('article.backend[data-backend="triton-b"][data-health="down"]', { timeout: WAIT_MS });
    const backend = page.locator('article.backend[data-backend="triton-b"]');
    expect(await backend.locator('tr[data-endpoint]').getAttribute('data-ejected')).toBe('true');
    expect(await backend.locator('tr[data-endpoint] td').nth(1).innerText()).toBe('ejected');
    expect(await backend.locator('tr[data-reason-for]').first().innerText()).toMatch(/^health: /);
    await page.waitForSelector('article.backend[data-backend="triton-b"] tr[data-ready="not-ready"]');
    // The other stays healthy.
    expect(await page.getAttribute('article.backend[data-backend="triton-a"]', 'data-health')).toBe('healthy');
    // Requests that land on triton-b now fail: the error rate shows up in the charts.
    await waitForNumberAbove(page, '#traffic-table tr[data-series="ranker/b"] [data-field=eps]');

    await mkdir(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
  });

  it('takes the key from a #key= fragment once, and removes it from the address', async () => {
    const second = await browser.newPage();
    try {
      await second.goto(`${base}/admin/ui#key=${encodeURIComponent(KEY)}`);
      await second.waitForSelector('#dashboard:not([hidden])', { timeout: WAIT_MS });
      expect(new URL(second.url()).hash).toBe('');
      expect(await second.isHidden('#login')).toBe(true);
      // Forgetting the key brings the form back and clears the tab's storage.
      await second.click('#signout');
      await second.waitForSelector('#login:not([hidden])');
      expect(await second.evaluate(() => sessionStorage.getItem('infergate.adminKey'))).toBeNull();
    } finally {
      await second.close();
    }
  });

  it('ran without script errors or Content-Security-Policy violations', () => {
    const bad = consoleMessages.filter((m) => /pageerror|Content Security Policy|Refused to/i.test(m));
    expect(bad).toEqual([]);
    expect(traffic.answered()).toBeGreaterThan(0);
  });
});
