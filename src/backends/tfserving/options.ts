import { invalidArgument } from '../../core/errors.js';
import type { InferRequest } from '../../core/inference.js';
import type { RestFormat } from '../../protocols/tfserving/rest-codec.js';
import { DEFAULT_SIGNATURE, SIGNATURE_PARAMETER } from '../../protocols/tfserving/signature.js';
import type { CallOptions } from '../backend.js';

/**
 * How a call to a TF Serving model is made, from the model's config
 * (`tfserving: {signature_name, rest_format}`) and the request.
 */

/**
 * The signature a call uses: the request's own choice (the SIGNATURE_PARAMETER,
 * consumed here: TF has no request parameters to send it on in), else the
 * model's configured one, else serving_default.
 */
export function signatureFor(opts: CallOptions, req?: InferRequest): string {
  const asked = req?.parameters?.[SIGNATURE_PARAMETER];
  if (asked !== undefined) {
    if (typeof asked !== 'string') throw invalidArgument(`parameter '${SIGNATURE_PARAMETER}' must be a string`);
    if (asked !== '') return asked;
  }
  return opts.model?.tfserving?.signatureName ?? DEFAULT_SIGNATURE;
}

export function restFormatFor(opts: CallOptions): RestFormat {
  return opts.model?.tfserving?.restFormat ?? 'columnar';
}

/** The outputs a request names; undefined when it names none (all of them). */
export function requestedOutputNames(req: InferRequest): string[] | undefined {
  const names = req.outputs?.map((o) => o.name);
  return names !== undefined && names.length > 0 ? names : undefined;
}
