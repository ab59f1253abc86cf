import type { Hono } from 'hono';
import type { InferenceService } from '../../routing/inference-service.js';
import type { HttpApiOptions, HttpEnv } from './context.js';
import { registerTfServingRoutes } from './tfserving.js';
import { registerTorchServeRoutes } from './torchserve.js';

/**
 * A REST surface in another server's format (TF Serving's, TorchServe's), so
 * that server's existing clients can call the gateway unchanged. Each decodes
 * into the canonical request and calls the same InferenceService as the v2 API.
 */
export type HttpFrontDoor = (app: Hono<HttpEnv>, service: InferenceService, opts: HttpApiOptions) => void;

export const HTTP_FRONT_DOORS: readonly HttpFrontDoor[] = [registerTfServingRoutes, registerTorchServeRoutes];
