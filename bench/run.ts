import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Runs benchmarks of bench/ (each file but this one exports `run()`, and
 * optionally `format(result)` for its printout) and writes each result to
 * bench/results/<name>.json, and the printout to bench/results/<name>.md.
 *
 *   npm run bench                  the gateway's cost against the alternatives: compare, then soak (~10 minutes)
 *   npm run bench -- NAME...       those benchmarks (compare, soak, routing, serving, batch)
 *   npm run bench -- all           every one
 */

interface BenchModule {
  run(): Promise<unknown>;
  format?(result: unknown): string;
}

const here = dirname(fileURLToPath(import.meta.url));
const results = join(here, 'results');

const DEFAULT = ['compare', 'soak'];
const asked = process.argv.slice(2);
const all = (await readdir(here)).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => basename(f, '.ts'));
const names = asked.includes('all') ? all.sort() : asked.length > 0 ? asked : DEFAULT;
const unknown = names.filter((n) => !all.includes(n));
if (unknown.length > 0) throw new Error(`no such benchmark: ${unknown.join(', ')} (there are: ${all.join(', ')}, or all)`);
const files = names.map((n) => `${n}.ts`);
await mkdir(results, { recursive: true });
for (const file of files) {
  const name = basename(file, '.ts');
  const bench = (await import(pathToFileURL(join(here, file)).href)) as BenchModule;
  const result = await bench.run();
  const out = join(results, `${name}.json`);
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  const printed = bench.format?.(result) ?? JSON.stringify(result, null, 2);
  const md = join(results, `${name}.md`);
  await writeFile(md, `${printed}\n`);
  process.stdout.write(`${printed}\n-> ${out}, ${md}\n`);
}
