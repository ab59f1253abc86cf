import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Runs every benchmark in bench/ (each file but this one exports `run()`,
 * and optionally `format(result)` for its printout) and writes each result
 * to bench/results/<name>.json. `npm run bench`; `npm run bench -- NAME...` runs only those.
 */

interface BenchModule {
  run(): Promise<unknown>;
  format?(result: unknown): string;
}

const here = dirname(fileURLToPath(import.meta.url));
const results = join(here, 'results');

const only = new Set(process.argv.slice(2));
const files = (await readdir(here))
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && (only.size === 0 || only.has(basename(f, '.ts'))))
  .sort();
await mkdir(results, { recursive: true });
for (const file of files) {
  const name = basename(file, '.ts');
  const bench = (await import(pathToFileURL(join(here, file)).href)) as BenchModule;
  const result = await bench.run();
  const out = join(results, `${name}.json`);
  await writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${bench.format?.(result) ?? JSON.stringify(result, null, 2)}\n-> ${out}\n`);
}
