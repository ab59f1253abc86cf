// The docker compose deployment (Dockerfile, docker-compose.yml, config/compose.yaml, examples/), checked without
// Docker: the gateway config validates, the compose file and the Dockerfile say what the README says they do, the
// pieces agree with each other (ports, service names, mounts, model names), and the three servers' example models
// compute what the reference servers compute. With python3 and numpy (.ci/run installs them), the Triton python-backend
// model and the TorchServe handler are run (outside their servers) against the reference on thousands of inputs;
// the TF Serving export needs TensorFlow and is only checked statically.
import { spawn, spawnSync } from 'node:child_process';
import { Buffer } from 'node:buffer';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { infer, modelMetadata } from '../../reference/triton/models.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown, what: string): Obj => {
  if (!isObj(v)) throw new Error(`${what} is not a map`);
  return v;
};

const compose = obj(parse(read('docker-compose.yml')), 'docker-compose.yml');
const services = obj(compose.services, 'services');
const service = (name: string): Obj => obj(services[name], `services.${name}`);
const config = obj(parse(read('config/compose.yaml')), 'config/compose.yaml');
const backends = obj(config.backends, 'backends');

/** A short-syntax volume "SOURCE:TARGET[:MODE]". */
function volumes(svc: Obj): { source: string; target: string; readOnly: boolean }[] {
  return ((svc.volumes as string[] | undefined) ?? []).map((v) => {
    const [source = '', target = '', mode] = v.split(':');
    return { source, target, readOnly: mode === 'ro' };
  });
}

/** The host path (relative to the repository) a path inside the container comes from, if a bind mount holds it. */
function hostPath(svc: Obj, containerPath: string): string | undefined {
  for (const { source, target } of volumes(svc)) {
    if (!source.startsWith('./')) continue;
    if (containerPath === target) return source.slice(2);
    if (containerPath.startsWith(`${target}/`)) return posix.join(source.slice(2), containerPath.slice(target.length + 1));
  }
  return undefined;
}

function dependsOn(svc: Obj): Record<string, string> {
  const deps = obj(svc.depends_on ?? {}, 'depends_on');
  return Object.fromEntries(Object.entries(deps).map(([name, d]) => [name, String(obj(d, name).condition)]));
}

/** Every leaf of the config's routing trees (models, targets, experiment arms) with the public model it serves. */
function leaves(): { backend: string; model: string }[] {
  const out: { backend: string; model: string }[] = [];
  const walk = (node: unknown, publicName: string): void => {
    if (!isObj(node)) return;
    if (typeof node.backend === 'string') out.push({ backend: node.backend, model: typeof node.model === 'string' ? node.model : publicName });
    for (const key of ['weighted', 'fallback', 'match']) if (Array.isArray(node[key])) for (const c of node[key] as unknown[]) walk(c, publicName);
    if (node.default !== undefined) walk(node.default, publicName);
  };
  for (const [name, node] of Object.entries(obj(config.models, 'models'))) walk(node, name);
  for (const [name, node] of Object.entries(obj(config.targets ?? {}, 'targets'))) walk(node, name);
  for (const e of Object.values(obj(config.experiments ?? {}, 'experiments'))) {
    const exp = obj(e, 'experiment');
    for (const arm of Object.values(obj(exp.arms, 'arms'))) walk(arm, String(exp.model));
  }
  return out;
}

const kindOf = (backend: string): string => String(obj(backends[backend], backend).kind);
const modelsOfKind = (kind: string): Set<string> => new Set(leaves().filter((l) => kindOf(l.backend) === kind).map((l) => l.model));

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function dockerfile(): { op: string; args: string }[] {
  const lines: string[] = [];
  let current = '';
  for (const raw of read('Dockerfile').split('\n')) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) current += `${line.slice(0, -1)} `;
    else {
      lines.push(current + line);
      current = '';
    }
  }
  return lines.map((l) => {
    const [op = '', ...rest] = l.split(/\s+/);
    return { op: op.toUpperCase(), args: rest.join(' ') };
  });
}

/** The instructions of each stage, by stage name (the image each stage is FROM resolved through ARGs). */
function stages(): { name: string; from: string; steps: { op: string; args: string }[] }[] {
  const args = new Map<string, string>();
  const out: { name: string; from: string; steps: { op: string; args: string }[] }[] = [];
  for (const step of dockerfile()) {
    if (step.op === 'ARG' && out.length === 0) {
      const [k = '', v = ''] = step.args.split('=');
      args.set(k, v);
    } else if (step.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(step.args);
      const image = (m?.[1] ?? '').replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? '');
      out.push({ name: m?.[2] ?? String(out.length), from: image, steps: [] });
    } else out[out.length - 1]?.steps.push(step);
  }
  return out;
}

/** `LINEAR_W = ...` and `LINEAR_BIAS = ...` of a Python example (one line each, JSON-compatible). */
function pythonWeights(path: string): { w: unknown; bias: unknown } {
  const text = read(path);
  const line = (name: string): unknown => {
    const m = new RegExp(`^${name} = (.+)$`, 'm').exec(text);
    if (!m?.[1]) throw new Error(`${path}: no ${name} line`);
    return JSON.parse(m[1]);
  };
  return { w: line('LINEAR_W'), bias: line('LINEAR_BIAS') };
}

/** LINEAR_W and LINEAR_BIAS of a reference server's models.ts. */
function referenceWeights(path: string): { w: unknown; bias: unknown } {
  const text = read(path);
  const w = /const LINEAR_W = (\[.*\]) as const;/.exec(text)?.[1];
  const bias = /const LINEAR_BIAS[^=]*= (\{.*\});/.exec(text)?.[1];
  if (!w || !bias) throw new Error(`${path}: LINEAR_W / LINEAR_BIAS not found`);
  return { w: JSON.parse(w), bias: JSON.parse(bias.replace(/'/g, '"').replace(/([{,]\s*)(\d+):/g, '$1"$2":')) };
}

function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The servers' own ports (each image's defaults, and TorchServe's config.properties). */
const SERVER_PORTS: Record<string, Record<string, number>> = {
  triton: { rest: 8000, grpc: 8001 },
  tfserving: { grpc: 8500, rest: 8501 },
  torchserve: { rest: 8080, grpc: 7070 },
};
const SERVICE_OF_KIND: Record<string, string> = { triton: 'triton', tfserving: 'tfserving', torchserve: 'torchserve' };

describe('config/compose.yaml', () => {
  it('passes `infergate validate`', async () => {
    const { code, stdout, stderr } = await run(process.execPath, ['bin/infergate.js', 'validate', 'config/compose.yaml']);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^config\/compose\.yaml: ok \(/);
  });

  it('points every backend at a compose service, on the port that server listens on for that protocol', () => {
    expect(Object.keys(backends).length).toBeGreaterThan(0);
    const seen = new Set<string>();
    for (const [name, b] of Object.entries(backends)) {
      const backend = obj(b, name);
      const kind = String(backend.kind);
      for (const e of backend.endpoints as unknown[]) {
        const address = typeof e === 'string' ? e : String(obj(e, 'endpoint').address);
        const [host, port] = address.split(':');
        expect(host, `${name}: ${address}`).toBe(SERVICE_OF_KIND[kind]);
        expect(Number(port), `${name}: ${address}`).toBe(SERVER_PORTS[kind]?.[String(backend.protocol)]);
        seen.add(`${kind}/${String(backend.protocol)}`);
      }
    }
    // Each server is reached over both of its protocols.
    expect([...seen].sort()).toEqual(['tfserving/grpc', 'tfserving/rest', 'torchserve/grpc', 'torchserve/rest', 'triton/grpc', 'triton/rest']);
  });

  it('keeps live config, the cache and the jobs queue in the compose Redis', () => {
    expect(obj(config.redis, 'redis').url).toBe('redis://redis:6379');
    expect(obj(config.cache, 'cache').redis).toBe('redis://redis:6379');
    expect(obj(config.jobs, 'jobs').redis).toBe('redis://redis:6379');
    expect(services.redis).toBeDefined();
  });

  it('serves the same linear model from all three servers, split and A/B tested across them', () => {
    const models = obj(config.models, 'models');
    for (const name of ['linear', 'linear-tf', 'linear-ts', 'linear-split', 'linear-ab']) expect(models[name], name).toBeDefined();
    const kinds = (node: unknown): string[] => {
      const n = obj(node, 'node');
      if (typeof n.backend === 'string') return [kindOf(n.backend)];
      return (n.weighted as unknown[]).flatMap(kinds);
    };
    expect(new Set(kinds(models['linear-split']))).toEqual(new Set(['triton', 'tfserving', 'torchserve']));
    const experiment = Object.values(obj(config.experiments, 'experiments')).map((e) => obj(e, 'experiment'))[0];
    expect(experiment?.model).toBe('linear-ab');
    expect(new Set(Object.values(obj(experiment?.arms, 'arms')).map((a) => kindOf(String(obj(a, 'arm').backend))))).toEqual(
      new Set(['triton', 'tfserving', 'torchserve']),
    );
    // Every leaf names the backend model `linear`, which each server's example serves.
    expect(new Set(leaves().map((l) => l.model))).toEqual(new Set(['linear']));
  });
});

describe('docker-compose.yml', () => {
  it('is a compose-spec file (no version key) with the gateway, Redis, the three servers and the TF export', () => {
    expect(compose.version).toBeUndefined();
    expect(Object.keys(services).sort()).toEqual(['gateway', 'redis', 'tf-export', 'tfserving', 'torchserve', 'triton']);
  });

  it('builds the gateway from this repository and publishes its REST and gRPC ports', () => {
    const gateway = service('gateway');
    expect(gateway.build).toBe('.');
    expect(gateway.ports).toEqual(expect.arrayContaining(['8000:8000', '8001:8001']));
    const server = obj(config.server, 'server');
    expect(obj(server.http, 'http').port).toBe(8000);
    expect(obj(server.grpc, 'grpc').port).toBe(8001);
    expect(obj(server.http, 'http').host).toBe('0.0.0.0');
    expect(obj(server.grpc, 'grpc').host).toBe('0.0.0.0');
  });

  it('mounts the config the gateway serves, as a directory (live reload), read-only', () => {
    const gateway = service('gateway');
    const command = gateway.command as string[];
    expect(command.slice(0, 2)).toEqual(['serve', '--config']);
    const served = command[2] ?? '';
    expect(hostPath(gateway, served)).toBe('config/compose.yaml');
    const mount = volumes(gateway).find((v) => served.startsWith(`${v.target}/`));
    expect(mount?.readOnly).toBe(true);
    expect(statSync(join(ROOT, mount?.source ?? '')).isDirectory()).toBe(true);
  });

  it('mounts the jobs directories of the config from ./examples/data', () => {
    const gateway = service('gateway');
    const jobs = obj(config.jobs, 'jobs');
    for (const dir of [...(jobs.input_dirs as string[]), ...(jobs.output_dirs as string[])]) {
      const host = hostPath(gateway, dir);
      expect(host, dir).toMatch(/^examples\/data\//);
      expect(statSync(join(ROOT, host ?? '')).isDirectory(), dir).toBe(true);
    }
    expect(existsSync(join(ROOT, 'examples/data/in/rows.jsonl'))).toBe(true);
  });

  it('gives the gateway every key the config reads, from the shell (required, never a default)', () => {
    const env = obj(service('gateway').environment, 'environment');
    const auth = obj(config.auth, 'auth');
    expect(auth.enabled ?? true).toBe(true);
    const keyEnvs = (auth.api_keys as unknown[]).map((k) => obj(k, 'api key').key_env).filter((e) => e !== undefined);
    expect(keyEnvs.length).toBeGreaterThan(0);
    const names = [...keyEnvs.map(String), String(obj(config.admin, 'admin').api_key_env)];
    for (const name of names) expect(env[name], name).toMatch(new RegExp(`^\\$\\{${name}:\\?`));
  });

  it('starts the gateway once Redis and every server it routes to are healthy', () => {
    const deps = dependsOn(service('gateway'));
    const routed = new Set(Object.values(backends).map((b) => SERVICE_OF_KIND[String(obj(b, 'backend').kind)] ?? '?'));
    expect(routed).toEqual(new Set(['triton', 'tfserving', 'torchserve']));
    for (const name of [...routed, 'redis']) expect(deps[name], name).toBe('service_healthy');
    for (const [name, condition] of Object.entries(deps)) {
      if (condition === 'service_healthy') expect(service(name).healthcheck, `${name} has no healthcheck`).toBeDefined();
    }
  });

  it('health-checks every long-running service with a command its image has', () => {
    const test = (name: string): string => {
      const t = obj(service(name).healthcheck, `${name}.healthcheck`).test as string[];
      expect(t[0], name).toBe('CMD');
      return t.slice(1).join(' ');
    };
    expect(test('redis')).toBe('redis-cli ping');
    expect(test('triton')).toMatch(/^python3 .*127\.0\.0\.1:8000\/v2\/health\/ready/);
    expect(test('torchserve')).toMatch(/^python .*127\.0\.0\.1:8080\/ping/);
    // TF Serving's image has neither curl nor python: bash's /dev/tcp asks for the model's status.
    const modelName = String(obj(service('tfserving').environment, 'environment').MODEL_NAME);
    expect(test('tfserving')).toContain(`/dev/tcp/127.0.0.1/8501`);
    expect(test('tfserving')).toContain(`GET /v1/models/${modelName} `);
    expect(service('tf-export').healthcheck).toBeUndefined();
    expect(service('tf-export').restart).toBe('no');
  });

  it('pins every image to a version (no latest)', () => {
    for (const [name, s] of Object.entries(services)) {
      const image = obj(s, name).image;
      if (name === 'gateway') continue;
      expect(image, name).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(image, name).not.toMatch(/:latest/);
    }
    expect(service('triton').image).toMatch(/^nvcr\.io\/nvidia\/tritonserver:\d\d\.\d\d-py3$/);
    expect(service('torchserve').image).toMatch(/^pytorch\/torchserve:[\d.]+-cpu$/);
    // The SavedModel is written by the same TensorFlow release TF Serving is built on.
    const tfVersion = String(service('tf-export').image).split(':')[1];
    expect(service('tfserving').image).toBe(`tensorflow/serving:${tfVersion}`);
  });

  it('runs Triton on the CPU with the example repository', () => {
    const triton = service('triton');
    expect(triton.command).toEqual(expect.arrayContaining(['tritonserver', '--model-repository=/models']));
    expect(hostPath(triton, '/models')).toBe('examples/triton/models');
    expect(triton.deploy).toBeUndefined(); // no GPU reservation
    expect(triton.shm_size).toBeDefined();
  });

  it('archives the TorchServe handler at startup and serves it with token auth off', () => {
    const ts = service('torchserve');
    expect(ts.entrypoint).toEqual(['/bin/bash', '-c']);
    const script = (ts.command as string[])[0] ?? '';
    const flag = (name: string): string | undefined => new RegExp(`${name} (\\S+)`).exec(script)?.[1];
    const model = flag('--model-name') ?? '';
    expect(modelsOfKind('torchserve')).toEqual(new Set([model]));
    expect(hostPath(ts, flag('--handler') ?? '')).toBe('examples/torchserve/linear_handler.py');
    expect(hostPath(ts, flag('--ts-config') ?? '')).toBe('examples/torchserve/config.properties');
    expect(flag('--export-path')).toBe(flag('--model-store'));
    expect(flag('--models')).toBe(`${model}=${model}.mar`);
    expect(script).toMatch(/torchserve --start --foreground /);
    expect(script).toContain('--disable-token-auth');
    // The archive's version picks the handler's bias: it must be one the handler knows.
    const version = flag('--version') ?? '';
    expect(Object.keys(pythonWeights('examples/torchserve/linear_handler.py').bias as object)).toContain(version.split('.')[0]);
  });

  it('TorchServe listens where the gateway calls it, on every interface', () => {
    const props = Object.fromEntries(
      read('examples/torchserve/config.properties')
        .split('\n')
        .filter((l) => l.includes('=') && !l.trimStart().startsWith('#'))
        .map((l) => [l.slice(0, l.indexOf('=')).trim(), l.slice(l.indexOf('=') + 1).trim()]),
    );
    expect(props.inference_address).toBe(`http://0.0.0.0:${SERVER_PORTS.torchserve?.rest}`);
    expect(props.grpc_inference_address).toBe('0.0.0.0');
    expect(Number(props.grpc_inference_port)).toBe(SERVER_PORTS.torchserve?.grpc);
    expect(props.management_address).toBe('http://0.0.0.0:8081');
    expect(Number(props.grpc_management_port)).toBe(7071);
    expect(props.disable_token_authorization).toBe('true');
  });

  it('exports the SavedModel once, into the volume TF Serving serves, before TF Serving starts', () => {
    const exporter = service('tf-export');
    const tfserving = service('tfserving');
    const modelName = String(obj(tfserving.environment, 'environment').MODEL_NAME);
    expect(modelsOfKind('tfserving')).toEqual(new Set([modelName]));
    expect(dependsOn(tfserving)).toEqual({ 'tf-export': 'service_completed_successfully' });
    const shared = volumes(exporter).find((v) => v.target === '/models');
    expect(shared?.source).toMatch(/^[\w-]+$/); // a named volume
    expect(obj(compose.volumes, 'volumes')).toHaveProperty(shared?.source ?? '');
    expect(volumes(tfserving)).toContainEqual({ source: shared?.source, target: '/models', readOnly: true });
    const command = exporter.command as string[];
    expect(hostPath(exporter, command[1] ?? '')).toBe('examples/tfserving/export_linear.py');
    expect(command[2]).toBe(`/models/${modelName}`); // the image's --model_base_path=/models/$MODEL_NAME
  });
});

describe('Dockerfile', () => {
  const all = stages();
  const build = all[0];
  const runtime = all[all.length - 1];
  const steps = (stage: typeof runtime, op: string): string[] => (stage?.steps ?? []).filter((s) => s.op === op).map((s) => s.args);

  it('typechecks in a build stage with every dependency, and builds the runtime stage from it', () => {
    expect(all.length).toBeGreaterThanOrEqual(2);
    expect(steps(build, 'RUN')).toEqual(expect.arrayContaining([expect.stringMatching(/^npm ci(?!.*--omit)/), 'npx tsc --noEmit', 'npm run build']));
    // COPY --from=build makes BuildKit run the build stage (and so the typecheck) for the runtime image.
    expect(steps(runtime, 'COPY').filter((c) => c.startsWith(`--from=${build?.name} `)).length).toBeGreaterThan(0);
  });

  it('runs on node:20-bookworm-slim with production dependencies only', () => {
    expect(runtime?.from).toBe('node:20-bookworm-slim');
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; engines: { node: string } };
    expect(pkg.engines.node).toMatch(/^>=20\./);
    // bin/infergate.js runs the sources through tsx (development); `npm run build` (esbuild) makes dist/ for the image.
    expect(pkg.dependencies.tsx).toBeDefined();
    expect(pkg.dependencies.esbuild).toBeDefined();
    expect(read('bin/infergate.js')).toContain("from 'tsx/esm/api'");
    expect(steps(runtime, 'RUN')).toEqual(expect.arrayContaining([expect.stringMatching(/^npm ci --omit=dev/)]));
  });

  it('copies only what runs: the build, whose modules find the .proto files where the sources do', () => {
    const copied = steps(runtime, 'COPY').map((c) => c.replace(/^--from=\S+\s+/, '').split(/\s+/)[0]?.replace(/^\/app\//, ''));
    expect(copied.sort()).toEqual(['config', 'dist', 'package.json']);
    // bin/build.mjs copies protos/ into dist/ beside dist/src/, so these relative paths hold in the build too.
    expect(read('bin/build.mjs')).toContain("join(out, 'protos')");
    for (const file of ['src/protocols/v2/grpc-proto.ts', 'src/protocols/tfserving/grpc-proto.ts', 'src/protocols/torchserve/grpc-proto.ts']) {
      expect(read(file)).toMatch(/\.\.\/\.\.\/\.\.\/protos\//);
    }
  });

  it('runs as a non-root user', () => {
    const user = steps(runtime, 'USER').at(-1);
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
  });

  it('exposes 8000 and 8001, health-checks /v2/health/ready with node, and serves /etc/infergate/gateway.yaml', () => {
    expect(steps(runtime, 'EXPOSE')).toEqual(['8000 8001']);
    const health = steps(runtime, 'HEALTHCHECK')[0] ?? '';
    expect(health).toMatch(/CMD \["node", "-e", /);
    expect(health).toContain('/v2/health/ready');
    expect(steps(runtime, 'ENTRYPOINT')).toEqual(['["node", "dist/infergate.js"]']);
    expect(steps(runtime, 'CMD')).toEqual(['["serve", "--config", "/etc/infergate/gateway.yaml"]']);
    expect(steps(runtime, 'RUN').join(' ')).toContain('cp config/gateway.yaml /etc/infergate/gateway.yaml');
  });

  it('has a .dockerignore that keeps node_modules and .git out and everything the image needs in', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.git', 'bench/results']));
    for (const needed of ['src', 'bin', 'protos', 'reference', 'config', 'test', 'package.json', 'package-lock.json', 'tsconfig.json']) {
      expect(ignored, needed).not.toContain(needed);
    }
  });
});

describe('the example models', () => {
  const reference = referenceWeights('reference/triton/models.ts');
  const tritonDir = 'examples/triton/models';

  it('every reference server has the same linear weights (the examples follow them)', () => {
    expect(referenceWeights('reference/tfserving/models.ts')).toEqual(reference);
    const ts = referenceWeights('reference/torchserve/models.ts');
    expect(ts.w).toEqual(reference.w);
    // TorchServe's versions are "1.0" / "2.0".
    expect(Object.values(ts.bias as object)).toEqual(Object.values(reference.bias as object));
  });

  it.each([
    `${tritonDir}/linear/1/model.py`,
    `${tritonDir}/linear/2/model.py`,
    'examples/torchserve/linear_handler.py',
    'examples/tfserving/export_linear.py',
  ])('%s has the reference weights and biases', (path) => {
    expect(pythonWeights(path)).toEqual(reference);
  });

  it('the Triton repository holds the model the config routes to, in every version the reference has', () => {
    const dirs = readdirSync(join(ROOT, tritonDir)).filter((d) => statSync(join(ROOT, tritonDir, d)).isDirectory());
    expect(new Set(dirs)).toEqual(modelsOfKind('triton'));
    const versions = readdirSync(join(ROOT, tritonDir, 'linear')).filter((d) => /^\d+$/.test(d)).sort();
    expect(versions).toEqual(modelMetadata('linear').versions);
    const code = versions.map((v) => read(`${tritonDir}/linear/${v}/model.py`));
    for (const c of code) expect(c).toBe(code[0]); // one model, the version directory picks the bias
  });

  it("config.pbtxt declares the reference's inputs and outputs (python backend, CPU)", () => {
    const pbtxt = read(`${tritonDir}/linear/config.pbtxt`).replace(/#.*$/gm, '');
    expect(/^name: "(\w+)"/m.exec(pbtxt)?.[1]).toBe('linear');
    expect(/^backend: "(\w+)"/m.exec(pbtxt)?.[1]).toBe('python');
    expect(pbtxt).toContain('kind: KIND_CPU');
    expect(pbtxt).toMatch(/version_policy: \{ all \{ \} \}/);
    const maxBatch = Number(/^max_batch_size: (\d+)/m.exec(pbtxt)?.[1]);
    const section = (name: string): { name: string; datatype: string; shape: number[] }[] => {
      const body = new RegExp(`^${name} \\[([\\s\\S]*?)^\\]`, 'm').exec(pbtxt)?.[1] ?? '';
      return [...body.matchAll(/name: "(\w+)"\s+data_type: TYPE_(\w+)\s+dims: \[([^\]]*)\]/g)].map((m) => {
        const dims = (m[3] ?? '').split(',').map((d) => Number(d.trim()));
        return { name: m[1] ?? '', datatype: m[2] ?? '', shape: maxBatch > 0 ? [-1, ...dims] : dims };
      });
    };
    const expected = modelMetadata('linear');
    expect(section('input')).toEqual(expected.inputs);
    expect(section('output')).toEqual(expected.outputs);
    const code = read(`${tritonDir}/linear/1/model.py`);
    for (const t of expected.inputs) expect(code).toContain(`get_input_tensor_by_name(request, "${t.name}")`);
    for (const t of expected.outputs) expect(code).toContain(`pb_utils.Tensor("${t.name}"`);
  });

  it("the TF export writes the reference's serving_default signature", () => {
    const code = read('examples/tfserving/export_linear.py');
    expect(code).toContain('tf.TensorSpec(shape=[None, 4], dtype=tf.float32, name="INPUT0")');
    expect(code).toContain('def serve(self, INPUT0)');
    expect(code).toContain('return {"SCORES": scores, "CLASS": best}');
    expect(code).toContain('signatures={"serving_default": ');
    expect(code).toMatch(/best = tf\.zeros\(.*dtype=tf\.int64\)/);
  });
});

describe('the example models run against the reference (python3 with numpy; .ci/run installs them)', () => {
  it('has python3 with numpy', () => {
    expect(spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore', timeout: 30_000 }).status).toBe(0);
  });

  // Float32 inputs: a grid of small integers (many ties between scores), random bit patterns (every magnitude,
  // subnormals included) and the special values.
  const rows: number[][] = [];
  for (let i = 0; i < 7 ** 4; i++) rows.push([0, 1, 2, 3].map((k) => (Math.floor(i / 7 ** k) % 7) - 3));
  let seed = 0x2545f491;
  const nextBits = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const scratch = Buffer.alloc(4);
  const randomFloat = (): number => {
    const exponent = nextBits() % 255; // 0 (zero, subnormals) to 254: every finite magnitude
    scratch.writeUInt32LE(((nextBits() & 0x807fffff) | (exponent << 23)) >>> 0);
    return scratch.readFloatLE(0);
  };
  for (let i = 0; i < 400; i++) rows.push([randomFloat(), randomFloat(), randomFloat(), randomFloat()]);
  for (let i = 0; i < 400; i++) rows.push([0, 1, 2, 3].map(() => Math.fround((nextBits() / 2 ** 32 - 0.5) * 200)));
  rows.push([-0, -0, -0, -0], [1e-45, -1e-45, 1e-40, 0], [3.4e38, 3.4e38, 0, 0], [Infinity, 0, 0, 0], [NaN, 1, 2, 3], [-Infinity, Infinity, 1, 1]);

  const data = Buffer.alloc(rows.length * 16);
  rows.forEach((r, i) => r.forEach((v, k) => data.writeFloatLE(v, (i * 4 + k) * 4)));
  const referenceOf = (version: string) => {
    const result = infer({ modelName: 'linear', modelVersion: version, inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows.length, 4], data }] });
    const scores = result.outputs.find((t) => t.name === 'SCORES')?.data ?? Buffer.alloc(0);
    const classes = result.outputs.find((t) => t.name === 'CLASS')?.data ?? Buffer.alloc(0);
    return {
      scores: Array.from({ length: rows.length * 3 }, (_, i) => scores.readFloatLE(i * 4)),
      classes: Array.from({ length: rows.length }, (_, i) => Number(classes.readBigInt64LE(i * 8))),
    };
  };
  const refs = { '1': referenceOf('1'), '2': referenceOf('2') };
  // TorchServe takes JSON: the rows whose inputs and answers are all finite (JSON has no NaN or Infinity).
  const finite = rows.map((r, i) => r.every(Number.isFinite) && [1, 2].every((v) => refs[String(v) as '1'].scores.slice(i * 3, i * 3 + 3).every(Number.isFinite)));
  const jsonRows = rows.filter((_, i) => finite[i]);

  let output: { triton: Record<string, Json>; torchserve: Record<string, Json> } | undefined;
  const harness = (): NonNullable<typeof output> => {
    if (output) return output;
    const res = spawnSync('python3', [join(ROOT, 'test/infra/compose_examples_harness.py')], {
      input: JSON.stringify({ rows_hex: data.toString('hex'), json_rows: jsonRows }),
      maxBuffer: 256 * 1024 * 1024,
      timeout: 120_000,
    });
    if (res.status !== 0) throw new Error(`harness failed (${String(res.status)}): ${res.stderr?.toString()}`);
    output = JSON.parse(res.stdout.toString()) as NonNullable<typeof output>;
    return output;
  };

  it.each(['1', '2'] as const)('the Triton python model, version %s, gives the reference bits (NaN, -0 and ties included)', (version) => {
    const got = obj(harness().triton[version], version);
    expect(got.scores_dtype).toBe('float32');
    expect(got.classes_dtype).toBe('int64');
    expect(got.shapes).toEqual([[rows.length, 3], [rows.length]]);
    const bytes = Buffer.from(String(got.scores_hex), 'hex');
    const scores = Array.from({ length: rows.length * 3 }, (_, i) => bytes.readFloatLE(i * 4));
    const ref = refs[version];
    const mismatch = scores.findIndex((s, i) => !Object.is(s, ref.scores[i]));
    expect(mismatch, `row ${Math.floor(mismatch / 3)}: ${JSON.stringify(rows[Math.floor(mismatch / 3)])}`).toBe(-1);
    expect(got.classes).toEqual(ref.classes);
  });

  it.each([['1.0', '1'], ['2.0', '2']] as const)('the TorchServe handler, archived as version %s, answers as the reference', (tsVersion, version) => {
    const got = obj(harness().torchserve[tsVersion], tsVersion);
    expect(got.load).toBeNull();
    const answers = (got.answers as string[]).map((a) => JSON.parse(a) as { SCORES: number[][]; CLASS: number[]; code?: number });
    const ref = refs[version];
    const expectedScores: number[][] = [];
    const expectedClasses: number[] = [];
    rows.forEach((_, i) => {
      if (!finite[i]) return;
      expectedScores.push(ref.scores.slice(i * 3, i * 3 + 3));
      expectedClasses.push(ref.classes[i] ?? -1);
    });
    // REST JSON body, gRPC map entry bytes, {"data": ...} and a bare matrix: the same answer.
    for (const answer of answers.slice(0, 4)) {
      expect(answer.CLASS).toEqual(expectedClasses);
      const mismatch = answer.SCORES.findIndex((s, i) => s.some((v, j) => !Object.is(v, expectedScores[i]?.[j])));
      expect(mismatch, `row ${mismatch}: ${JSON.stringify(jsonRows[mismatch])}`).toBe(-1);
    }
    // A malformed request is a 400 with TorchServe's error shape; the batch's other requests are unaffected.
    expect(answers[4]?.code).toBe(400);
    expect(answers[5]?.code).toBe(400);
    expect(got.status).toEqual({ '4': [400, 'Bad Request'], '5': [400, 'Bad Request'] });
    expect(Object.values(obj(got.content_type, 'content_type'))).toEqual(Array(6).fill('application/json'));
  });
});
