import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/core/errors.js';
import { confineInput, confineOutput, isInside } from '../../src/jobs/paths.js';

let root: string;
let dataIn: string;
let dataIn2: string;
let dataOut: string;
let outside: string;

beforeAll(async () => {
  // realpath: tmpdir() may itself be a symlink (macOS /var -> /private/var).
  root = await realpath(await mkdtemp(join(tmpdir(), 'infergate-paths-')));
  dataIn = join(root, 'data');
  dataIn2 = join(root, 'data2'); // a sibling whose name starts with the allowed one's
  dataOut = join(root, 'out');
  outside = join(root, 'elsewhere');
  for (const d of [dataIn, dataIn2, dataOut, outside, join(dataIn, 'sub')]) await mkdir(d, { recursive: true });
  await writeFile(join(dataIn, 'rows.jsonl'), '{"x":1}\n');
  await writeFile(join(dataIn, 'sub', 'nested.jsonl'), '{"x":1}\n');
  await writeFile(join(dataIn2, 'rows.jsonl'), '{"x":1}\n');
  await writeFile(join(outside, 'secret.jsonl'), '{"x":1}\n');
  await writeFile(join(dataOut, 'existing.jsonl'), '');
  // Links inside the allowed directories pointing out of them, and one pointing within.
  await symlink(join(outside, 'secret.jsonl'), join(dataIn, 'escape.jsonl'));
  await symlink(outside, join(dataIn, 'escape-dir'));
  await symlink(join(dataIn, 'rows.jsonl'), join(dataIn, 'alias.jsonl'));
  await symlink(outside, join(dataOut, 'escape-dir'));
  await symlink(join(outside, 'target.jsonl'), join(dataOut, 'link.jsonl'));
});
afterAll(async () => {
  if (root !== undefined) await rm(root, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return (err as GatewayError).code;
  }
  return 'OK';
}

describe('isInside', () => {
  it('compares by path components', () => {
    expect(isInside('/data/a', '/data')).toBe(true);
    expect(isInside('/data', '/data')).toBe(true);
    expect(isInside('/data2/a', '/data')).toBe(false);
    expect(isInside('/data/../etc', '/data')).toBe(false);
    expect(isInside('/', '/data')).toBe(false);
    expect(isInside('/data/..a', '/data')).toBe(true); // a name starting with '..' is still inside
  });
});

describe('confineInput', () => {
  it('accepts absolute and relative paths inside an allowed directory, returning the real path', async () => {
    expect(await confineInput(join(dataIn, 'rows.jsonl'), [dataIn])).toBe(join(dataIn, 'rows.jsonl'));
    expect(await confineInput('rows.jsonl', [dataIn])).toBe(join(dataIn, 'rows.jsonl'));
    expect(await confineInput('sub/nested.jsonl', [dataIn])).toBe(join(dataIn, 'sub', 'nested.jsonl'));
    expect(await confineInput('sub/../rows.jsonl', [dataIn])).toBe(join(dataIn, 'rows.jsonl'));
    // A second allowed directory, by absolute path.
    expect(await confineInput(join(dataIn2, 'rows.jsonl'), [dataIn, dataIn2])).toBe(join(dataIn2, 'rows.jsonl'));
    // A link that stays inside resolves to its target.
    expect(await confineInput('alias.jsonl', [dataIn])).toBe(join(dataIn, 'rows.jsonl'));
  });

  it('refuses ../ escapes and sibling directories sharing a prefix', async () => {
    expect(await codeOf(confineInput('../elsewhere/secret.jsonl', [dataIn]))).toBe('PERMISSION_DENIED');
    expect(await codeOf(confineInput(join(dataIn, '..', 'elsewhere', 'secret.jsonl'), [dataIn]))).toBe('PERMISSION_DENIED');
    expect(await codeOf(confineInput(join(dataIn2, 'rows.jsonl'), [dataIn]))).toBe('PERMISSION_DENIED');
    expect(await codeOf(confineInput('../data2/rows.jsonl', [dataIn]))).toBe('PERMISSION_DENIED');
  });

  it('refuses symlinks that lead outside, at the file or at a directory', async () => {
    expect(await codeOf(confineInput('escape.jsonl', [dataIn]))).toBe('PERMISSION_DENIED');
    expect(await codeOf(confineInput('escape-dir/secret.jsonl', [dataIn]))).toBe('PERMISSION_DENIED');
  });

  it('names the path and the allowed directories', async () => {
    await expect(confineInput(join(outside, 'secret.jsonl'), [dataIn, dataIn2])).rejects.toThrow(
      `'${join(outside, 'secret.jsonl')}' is outside the allowed directories: ${dataIn}, ${dataIn2}`,
    );
  });

  it('NOT_FOUND for a missing input, INVALID_ARGUMENT for empty, NUL and directories', async () => {
    expect(await codeOf(confineInput('missing.jsonl', [dataIn]))).toBe('NOT_FOUND');
    expect(await codeOf(confineInput('', [dataIn]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(confineInput('rows\0.jsonl', [dataIn]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(confineInput('sub', [dataIn]))).toBe('INVALID_ARGUMENT');
  });
});

describe('confineOutput', () => {
  it('accepts a new or existing regular file inside an allowed directory', async () => {
    expect(await confineOutput('new.jsonl', [dataOut])).toBe(join(dataOut, 'new.jsonl'));
    expect(await confineOutput(join(dataOut, 'existing.jsonl'), [dataOut])).toBe(join(dataOut, 'existing.jsonl'));
  });

  it('refuses escapes by ../, sibling prefix and a linked directory', async () => {
    expect(await codeOf(confineOutput('../elsewhere/x.jsonl', [dataOut]))).toBe('PERMISSION_DENIED');
    expect(await codeOf(confineOutput(join(root, 'out2', 'x.jsonl'), [dataOut]))).toBe('NOT_FOUND'); // no such dir
    await mkdir(join(root, 'out2'), { recursive: true });
    expect(await codeOf(confineOutput(join(root, 'out2', 'x.jsonl'), [dataOut]))).toBe('PERMISSION_DENIED');
    expect(await codeOf(confineOutput('escape-dir/x.jsonl', [dataOut]))).toBe('PERMISSION_DENIED');
  });

  it('refuses a symlink as the output file, even one that dangles', async () => {
    await expect(confineOutput('link.jsonl', [dataOut])).rejects.toThrow(/symbolic link/);
    expect(await codeOf(confineOutput('link.jsonl', [dataOut]))).toBe('PERMISSION_DENIED');
  });

  it('NOT_FOUND for a missing directory; INVALID_ARGUMENT for a directory, empty or NUL', async () => {
    expect(await codeOf(confineOutput('nodir/x.jsonl', [dataOut]))).toBe('NOT_FOUND');
    expect(await codeOf(confineOutput(dataOut, [dataOut]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(confineOutput('', [dataOut]))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(confineOutput('x\0.jsonl', [dataOut]))).toBe('INVALID_ARGUMENT');
  });
});
