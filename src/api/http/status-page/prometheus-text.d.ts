/** Types of prometheus-text.js (a plain ES module the status page loads as it is). */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}
export interface Exposition {
  readonly types: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}
export function parsePrometheusText(text: string): Exposition;
export function parseValue(text: string | undefined): number | undefined;
export function histogramQuantile(q: number, buckets: readonly { readonly le: number; readonly count: number }[]): number | null;
