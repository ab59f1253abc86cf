import { ResponseCache } from './cache/response-cache.js';
import { createCacheStore } from './cache/create-store.js';
import { RuntimeSwitcher } from './config/live-runtime.js';
import type { GatewayConfig } from './config/schema.js';
import type { Logger } from './observability/logger.js';
import type { InferenceService } from './routing/inference-service.js';

/** The prediction pipeline of one config without listeners: what `infergate batch` and `infergate stream` run on. */
export interface Pipeline {
  readonly service: InferenceService;
  close(): Promise<void>;
}

/**
 * Backends, routing, resilience, cache and batching built from a config, as
 * the gateway builds them, with health checks running; no HTTP or gRPC
 * listener and no live reload.
 */
export function buildPipeline(config: GatewayConfig, logger: Logger): Pipeline {
  const cache = new ResponseCache(createCacheStore(config.cache, logger), logger);
  const switcher = new RuntimeSwitcher(config, { maxBodyBytes: config.server.max_body_bytes, logger, cache });
  switcher.start();
  return {
    service: switcher.service,
    async close() {
      await switcher.close();
      await cache.close();
    },
  };
}
