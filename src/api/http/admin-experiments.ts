import { parseDocument } from 'yaml';
import type { ExperimentConfig } from '../../config/experiment-schema.js';
import { EXPERIMENT_STATES } from '../../config/experiment-schema.js';
import { invalidArgument, notFound } from '../../core/errors.js';

/**
 * PATCH /admin/experiments/{name}: `{"state"?: "running"|"paused"|"ended",
 * "weights"?: {arm: n}}` becomes an edit of the running config text (the
 * `yaml` Document API keeps its comments and layout), which then goes the
 * way of PUT /admin/config: validated in full, a new version, a diff, shared
 * through Redis.
 */
export function experimentPatchText(
  text: string,
  config: { readonly experiments?: Readonly<Record<string, ExperimentConfig>> },
  name: string,
  patch: unknown,
): string {
  const experiment = config.experiments?.[name];
  if (experiment === undefined || !Object.hasOwn(config.experiments ?? {}, name)) {
    const known = Object.keys(config.experiments ?? {}).join(', ') || 'none';
    throw notFound(`unknown experiment '${name}' (configured: ${known})`);
  }
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
    throw invalidArgument('the body must be a JSON object: {"state"?: "running"|"paused"|"ended", "weights"?: {"<arm>": <integer>}}');
  }
  const body = patch as Record<string, unknown>;
  const unknownKeys = Object.keys(body).filter((k) => k !== 'state' && k !== 'weights');
  if (unknownKeys.length > 0) throw invalidArgument(`unknown key${unknownKeys.length > 1 ? 's' : ''} ${unknownKeys.map((k) => `'${k}'`).join(', ')} (use state, weights)`);
  if (body.state === undefined && body.weights === undefined) throw invalidArgument('nothing to change: give state, weights or both');
  const { state, weights } = body;
  if (state !== undefined && !(EXPERIMENT_STATES as readonly unknown[]).includes(state)) {
    throw invalidArgument(`state: must be one of ${EXPERIMENT_STATES.join(', ')}`);
  }
  const arms = Object.keys(experiment.arms);
  const newWeights: [string, number][] = [];
  if (weights !== undefined) {
    if (typeof weights !== 'object' || weights === null || Array.isArray(weights)) throw invalidArgument('weights: must be an object {"<arm>": <integer>}');
    for (const [arm, w] of Object.entries(weights)) {
      if (!arms.includes(arm)) throw invalidArgument(`weights.${arm}: unknown arm (arms: ${arms.join(', ')})`);
      if (typeof w !== 'number' || !Number.isInteger(w) || w < 0) throw invalidArgument(`weights.${arm}: must be an integer >= 0`);
      newWeights.push([arm, w]);
    }
  }
  const doc = parseDocument(text, { uniqueKeys: false });
  if (doc.errors.length > 0) throw invalidArgument('the running config text does not parse as YAML');
  if (state !== undefined) doc.setIn(['experiments', name, 'state'], state);
  for (const [arm, w] of newWeights) doc.setIn(['experiments', name, 'arms', arm, 'weight'], w);
  return doc.toString();
}
