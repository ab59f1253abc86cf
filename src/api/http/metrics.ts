import { Hono } from 'hono';
import type { HttpEnv } from './context.js';

/** What /metrics serves: the gateway's registry in Prometheus' text format (observability/metrics.ts). */
export interface MetricsExposition {
  readonly contentType: string;
  render(): Promise<string>;
}

/**
 * GET /metrics on the REST listener, mounted by the app after its middleware
 * (request id, access control) and never refused by the in-flight limit, so
 * Prometheus sees a gateway under overload. Its one route is registered here.
 */
export function createMetricsApp(metrics: MetricsExposition): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  app.get('/', async (c) => c.body(await metrics.render(), 200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }));
  return app;
}
