import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';

describe('infergate demo', () => {
  it('serves a prediction with no external service, and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, ['bin/infergate.js', 'demo'], {
      env: { ...process.env, INFERGATE_HTTP_PORT: '0', INFERGATE_GRPC_PORT: '0' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      let banner = '';
      const base = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`demo did not start: ${banner}`)), 20_000);
        child.stderr.on('data', (chunk: Buffer) => {
          banner += chunk.toString();
          const match = /gateway on (http:\/\/127\.0\.0\.1:\d+)/.exec(banner);
          if (match) {
            clearTimeout(timer);
            resolve(match[1]!);
          }
        });
        child.once('exit', (code) => reject(new Error(`demo exited ${code}: ${banner}`)));
      });
      // The banner's own curl example, sent as written.
      expect(banner).toContain(`curl -s ${base}/v2/models/linear/infer`);
      const pool = new Pool(base);
      // The same model on Triton, TF Serving and TorchServe gives the same answer.
      for (const model of ['linear', 'linear-tf', 'linear-ts']) {
        const res = await pool.request({
          method: 'POST',
          path: `/v2/models/${model}/infer`,
          headers: { 'content-type': 'application/json' },
          body: '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}',
        });
        const body = (await res.body.json()) as { model_name: string; outputs: { name: string; data: number[] }[] };
        expect(res.statusCode, JSON.stringify(body)).toBe(200);
        expect(body.model_name).toBe(model);
        // Version 2 of the reference linear model: x.W + b with b = [1, 0, -1].
        expect(body.outputs.find((o) => o.name === 'SCORES')?.data).toEqual([7, 5, 2.75]);
        expect(body.outputs.find((o) => o.name === 'CLASS')?.data).toEqual([0]);
      }
      await pool.close();
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
