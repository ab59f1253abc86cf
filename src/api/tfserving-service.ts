import { GatewayError } from '../core/errors.js';
import type { Parameters } from '../core/parameters.js';
import type { ModelVersionStatusMessage } from '../protocols/tfserving/grpc-proto.js';
import { DEFAULT_SIGNATURE, isNumericVersion, SIGNATURE_PARAMETER, versionStatus } from '../protocols/tfserving/signature.js';
import type { InferenceService, RequestContext } from '../routing/inference-service.js';
import type { RouteTarget } from '../routing/model-router.js';

/**
 * What the TF Serving front doors (REST and gRPC) ask of the InferenceService
 * beyond inference: signature selection, and model version status built from
 * readiness. Shared so both doors answer a TF client the same way.
 */

/** Status of at most this many versions is probed for one GetModelStatus without a version. */
const MAX_STATUS_VERSIONS = 16;

/**
 * The request parameters for the signature a TF client named. Every model
 * shows TF clients one signature, `serving_default` (its metadata); a model on
 * a TF Serving backend may be asked for any of its own signatures, which its
 * adapter then calls. Other backends have no signatures to choose from.
 */
export function signatureParameters(signatureName: string | undefined, target: RouteTarget): Parameters | undefined {
  if (signatureName === undefined || signatureName === '' || signatureName === DEFAULT_SIGNATURE) return undefined;
  const { route } = target;
  if (route.backend.kind === 'tfserving') return { [SIGNATURE_PARAMETER]: signatureName };
  throw new GatewayError(
    'FAILED_PRECONDITION',
    `Serving signature key "${signatureName}" not found: model '${route.name}' is served by a ${route.backend.kind} backend ` +
      `and has only the signature "${DEFAULT_SIGNATURE}"`,
  );
}

/**
 * GetModelStatus from readiness: the version asked for, or (none asked) every
 * version the model's metadata lists, newest first as TF lists them. Unknown
 * models and unreachable backends fail as readiness does (NOT_FOUND,
 * UNAVAILABLE).
 */
export async function modelVersionStatus(
  service: InferenceService,
  model: string,
  version: string,
  ctx: RequestContext,
): Promise<ModelVersionStatusMessage[]> {
  const target = service.resolve(model, version);
  if (version !== '') return [versionStatus(version, await service.modelReady(model, version, ctx), model)];
  // Metadata names the versions; a model that is not ready may have none to give, and then readiness speaks.
  const versions = await service.cachedModelMetadata(target, ctx).then(
    (meta) => meta.versions,
    () => [] as readonly string[],
  );
  if (versions.length === 0) return [versionStatus('', await service.modelReady(model, '', ctx), model)];
  const newestFirst = [...versions].sort(byVersionDescending).slice(0, MAX_STATUS_VERSIONS);
  const ready = await Promise.all(newestFirst.map((v) => service.modelReady(model, v, ctx).catch(() => false)));
  return newestFirst.map((v, i) => versionStatus(v, ready[i] === true, model));
}

function byVersionDescending(a: string, b: string): number {
  const na = isNumericVersion(a);
  const nb = isNumericVersion(b);
  if (na && nb) {
    const d = BigInt(b) - BigInt(a);
    return d > 0n ? 1 : d < 0n ? -1 : 0;
  }
  return na ? -1 : nb ? 1 : b.localeCompare(a);
}
