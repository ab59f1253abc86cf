import { GatewayError, invalidArgument } from '../../core/errors.js';
import {
  encodeModelMetadataJson,
  encodeModelStatusJson,
  encodePredictResponse,
  parsePredictBody,
  predictInputs,
} from '../../protocols/tfserving/rest-codec.js';
import { reportedVersion } from '../../protocols/tfserving/signature.js';
import type { InferenceService } from '../../routing/inference-service.js';
import { modelVersionStatus, signatureParameters } from '../tfserving-service.js';
import { readBody } from './body.js';
import { requestContext, timeInference, type HttpApiOptions, type HttpContext } from './context.js';
import type { HttpFrontDoor } from './front-doors.js';

/**
 * TF Serving's REST API on the gateway, so TF Serving's clients can call any
 * model the gateway routes (whatever server runs it):
 *
 *   POST /v1/models/{m}[/versions/{n}|/labels/{l}]:predict     row or columnar
 *   GET  /v1/models/{m}[/versions/{n}|/labels/{l}]             version status
 *   GET  /v1/models/{m}[/versions/{n}|/labels/{l}]/metadata    signature_def
 *
 * A label travels as the version string; a TF Serving backend resolves it,
 * other servers refuse it. Errors are `{"error": "..."}` with TF's statuses
 * (the gateway's own mapping is the same), through the app's error handler.
 *
 * TF's paths put `:predict` on the model segment, which route patterns cannot
 * split, so one route takes `/v1/*` and TF's own two regexes (compiled here,
 * once) parse the path.
 */
const PREDICT_PATH = /^\/v1\/models\/([^/:]+)(?:\/versions\/(\d+)|\/labels\/([^/:]+))?:([A-Za-z]+)$/i;
const GET_PATH = /^\/v1\/models(?:\/([^/:]+))?(?:\/versions\/(\d+)|\/labels\/([^/:]+))?(\/metadata)?$/i;
const JSON_TYPE = { 'content-type': 'application/json' } as const;

export const registerTfServingRoutes: HttpFrontDoor = (app, service, opts) => {
  app.all('/v1/*', async (c) => {
    // The raw path, decoded once per segment below (the router's own path is already partly decoded).
    const path = new URL(c.req.url).pathname;
    const method = c.req.method;
    const post = method === 'POST' ? PREDICT_PATH.exec(path) : null;
    if (post !== null) {
      const verb = post[4]!.toLowerCase();
      if (verb !== 'predict') {
        throw new GatewayError('UNIMPLEMENTED', `:${verb} is not served by this gateway; TF Serving clients can use :predict`);
      }
      // Only :predict is an inference (timed for the metrics); the other paths share this route.
      return timeInference(c, opts, () => predict(c, service, opts, segment(post[1]!), segment(post[2] ?? post[3] ?? '')));
    }
    const get = method === 'GET' ? GET_PATH.exec(path) : null;
    if (get === null) throw invalidArgument(`Malformed request: ${method} ${path}`);
    if (get[1] === undefined) throw invalidArgument('Missing model name in request.');
    const model = segment(get[1]);
    const version = segment(get[2] ?? get[3] ?? '');
    const ctx = requestContext(c, opts);
    if (get[4] !== undefined) {
      const meta = await service.modelMetadata(model, version, ctx);
      return c.body(encodeModelMetadataJson(meta, reportedVersion(version, meta.versions)), 200, JSON_TYPE);
    }
    return c.body(encodeModelStatusJson(await modelVersionStatus(service, model, version, ctx)), 200, JSON_TYPE);
  });
};

async function predict(c: HttpContext, service: InferenceService, opts: HttpApiOptions, model: string, version: string): Promise<Response> {
  // Resolved first: an unknown model is NOT_FOUND whatever the body holds.
  const target = service.resolve(model, version, c.get('inference'));
  const ctx = requestContext(c, opts);
  const body = parsePredictBody(await readBody(c.env.incoming, opts.maxBodyBytes));
  const parameters = signatureParameters(body.signatureName, target);
  // TF's JSON names no datatypes: the model's metadata (cached) types the values.
  const meta = await service.cachedModelMetadata(target, ctx);
  const inputs = predictInputs(body, meta.inputs);
  const response = await service.infer({ model, version, inputs, ...(parameters !== undefined ? { parameters } : {}) }, ctx, target);
  return c.body(encodePredictResponse(response.outputs, body.format), 200, JSON_TYPE);
}

/** A path segment as the client meant it. */
function segment(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw invalidArgument(`invalid percent-encoding in ${JSON.stringify(raw)}`);
  }
}
