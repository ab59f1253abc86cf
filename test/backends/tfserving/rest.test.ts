import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { TfServingRestBackend } from '../../../src/backends/tfserving/rest.js';
import { linearRequest, soon, tfServingAdapterSuite } from '../../helpers/tfserving-backend-suite.js';
import { expectGatewayError } from '../../helpers/tfserving.js';

tfServingAdapterSuite('rest', (opts) => new TfServingRestBackend(opts), ['columnar', 'row']);

const METADATA = JSON.stringify({
  model_spec: { name: 'linear', signature_name: '', version: '3' },
  metadata: {
    signature_def: {
      signature_def: {
        serving_default: {
          inputs: { INPUT0: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }, { size: '4' }] } } },
          outputs: { Y: { dtype: 'DT_FLOAT', tensor_shape: { dim: [{ size: '-1' }] } } },
          method_name: 'tensorflow/serving/predict',
        },
      },
    },
  },
});

/** A TF-Serving-like server whose predict answers `predict(body)`; it records what it was sent. */
async function fakeServer(predict: (body: string) => [number, string]) {
  const requests: { method: string; url: string; body: string }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', body });
      const [status, text] = req.url?.endsWith('/metadata') ? [200, METADATA] : predict(body);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(text);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const backend = new TfServingRestBackend({ endpoint, maxConnections: 2 });
  return {
    backend,
    requests,
    async close() {
      await backend.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

describe('TfServingRestBackend on the wire', () => {
  it('sends the configured layout to /labels/ or /versions/, and fetches the signature once', async () => {
    const fake = await fakeServer(() => [200, '{"predictions": [1.5]}']);
    try {
      const row = soon(5_000, { restFormat: 'row' });
      const first = await fake.backend.infer(linearRequest('canary', [[1, 2, 3, 4]]), row);
      expect(first).toMatchObject({ model: 'linear', version: '3' });
      expect(first.outputs[0]).toMatchObject({ name: 'Y', datatype: 'FP32', shape: [1] });
      await fake.backend.infer(linearRequest('canary', [[1, 2, 3, 4]]), row);
      expect(fake.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
        'GET /v1/models/linear/labels/canary/metadata',
        'POST /v1/models/linear/labels/canary:predict',
        'POST /v1/models/linear/labels/canary:predict',
      ]);
      expect(JSON.parse(fake.requests[1]!.body)).toEqual({ signature_name: 'serving_default', instances: [{ INPUT0: [1, 2, 3, 4] }] });
      await fake.backend.infer(linearRequest('12'), row);
      expect(fake.requests.at(-1)!.url).toBe('/v1/models/linear/versions/12:predict');
    } finally {
      await fake.close();
    }
  });

  it('a reply it cannot read is INTERNAL, naming the backend', async () => {
    const fake = await fakeServer(() => [200, '{"outputs": [[1, 2], [3]]}']);
    try {
      await expectGatewayError(fake.backend.infer(linearRequest(''), soon()), 'INTERNAL', /^backend tfserving 127\.0\.0\.1:\d+ sent an invalid predict reply: .*not rectangular/);
    } finally {
      await fake.close();
    }
  });

  it("TF's {\"error\"} body is passed on with its status's code", async () => {
    const fake = await fakeServer(() => [429, '{\n    "error": "Too many requests, try later"\n}']);
    try {
      await expectGatewayError(fake.backend.infer(linearRequest(''), soon()), 'RESOURCE_EXHAUSTED', /^Too many requests, try later$/);
    } finally {
      await fake.close();
    }
  });

  it('refuses an output the signature does not have, before calling predict', async () => {
    const fake = await fakeServer(() => [200, '{"outputs": [1]}']);
    try {
      await expectGatewayError(fake.backend.infer(linearRequest('', [[1, 2, 3, 4]], { outputs: [{ name: 'Z' }] }), soon()), 'INVALID_ARGUMENT', /has no output 'Z' \(its outputs: Y\)/);
      expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
    } finally {
      await fake.close();
    }
  });
});
