/**
 * What a model name and a version may look like. Names travel in URL paths and
 * backend requests, so `/`, `..`, whitespace and control characters are
 * refused at the edge rather than passed on.
 */
export const MODEL_NAME_PATTERN = /^(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const VERSION_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

export function isValidModelName(name: string): boolean {
  return MODEL_NAME_PATTERN.test(name);
}

export function isValidVersion(version: string): boolean {
  return VERSION_PATTERN.test(version);
}
