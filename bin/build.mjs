#!/usr/bin/env node
// `npm run build`: the gateway as plain JavaScript in dist/, for production (`npm start`, the Docker image, the
// benchmarks). bin/infergate.js runs the TypeScript sources through tsx, which is right for development but costs
// on every request: tsx compiles with esbuild's keepNames, which wraps each function created at run time (closures
// per request included) in a naming call. This transpiles each file on its own (no bundling, no type check: that is
// `tsc --noEmit` in `npm test`) into the same layout under dist/, so the paths the code resolves from its own
// location (protos/, the status page's files, reference/) hold there too.
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));
const out = join(root, 'dist');

async function walk(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await walk(path)));
    else found.push(path);
  }
  return found;
}

await rm(out, { recursive: true, force: true });
const files = [...(await walk(join(root, 'src'))), ...(await walk(join(root, 'reference')))];
const sources = files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
await build({
  entryPoints: sources,
  outdir: out,
  outbase: root,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
});
// Files the code reads at run time: the status page's assets, and the .proto files.
for (const f of files.filter((f) => !f.endsWith('.ts'))) {
  const to = join(out, relative(root, f));
  await mkdir(dirname(to), { recursive: true });
  await cp(f, to);
}
await cp(join(root, 'protos'), join(out, 'protos'), { recursive: true });
await writeFile(
  join(out, 'infergate.js'),
  `#!/usr/bin/env node
// The CLI from the JavaScript build (npm run build); bin/infergate.js runs the same from the TypeScript sources.
const { main } = await import('./src/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
`,
  { mode: 0o755 },
);
process.stdout.write(`built ${sources.length} modules into ${relative(process.cwd(), out) || '.'}/ (node dist/infergate.js)\n`);
