import type { ModelMetadata } from '../../core/inference.js';

/** What the adapters read of TorchServe's describe-model answer (one entry per version). */
export interface ModelDescription {
  readonly modelVersion: string;
  readonly workers: readonly { readonly status: string }[];
}

export const TORCHSERVE_PLATFORM = 'pytorch_torchserve';

/**
 * `[{"modelName", "modelVersion", "workers": [{"status": "READY", ...}], ...}]`
 * from GET /models/{m}[/{v}|/all]; throws on any other shape.
 */
export function parseDescription(body: Buffer): ModelDescription[] {
  const parsed: unknown = JSON.parse(body.toString('utf8'));
  if (!Array.isArray(parsed)) throw new Error('expected a JSON list of model versions');
  return parsed.map((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) throw new Error(`entry ${i} is not an object`);
    const { modelVersion, workers } = entry as Record<string, unknown>;
    return {
      modelVersion: typeof modelVersion === 'string' ? modelVersion : String(modelVersion ?? ''),
      workers: Array.isArray(workers)
        ? workers.map((w: unknown) => ({ status: String((w as Record<string, unknown> | null)?.status ?? '') }))
        : [],
    };
  });
}

/** Ping's body (REST) or health string (gRPC): `{"status": "Healthy"}` means healthy, anything else does not. */
export function parsePing(health: Buffer | string): boolean {
  try {
    const parsed: unknown = JSON.parse(typeof health === 'string' ? health : health.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && (parsed as Record<string, unknown>).status === 'Healthy';
  } catch {
    return false;
  }
}

/**
 * Metadata where TorchServe cannot describe the model: TorchServe has no tensor
 * metadata at all (a handler takes bytes and returns bytes), so inputs and
 * outputs are always empty; the versions are the one asked for, if any.
 */
export function synthesizedMetadata(model: string, version: string): ModelMetadata {
  return { name: model, versions: version === '' ? [] : [version], platform: TORCHSERVE_PLATFORM, inputs: [], outputs: [] };
}
