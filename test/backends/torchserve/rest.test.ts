import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTorchServeReference, type TorchServeReference } from '../../../reference/torchserve/index.js';
import { restError } from '../../../src/backends/torchserve/errors.js';
import { TorchServeRestBackend } from '../../../src/backends/torchserve/rest.js';
import { TorchServeError } from '../../../src/protocols/torchserve/error.js';
import { torchServeAdapterSuite } from '../../helpers/torchserve-backend-suite.js';
import { expectGatewayError, linearRequest, simpleRequest, soon } from '../../helpers/torchserve.js';

torchServeAdapterSuite('rest', (opts) => new TorchServeRestBackend(opts));

describe('TorchServe REST adapter: readiness, metadata, wire', () => {
  let ref: TorchServeReference;
  let backend: TorchServeRestBackend;

  beforeAll(async () => {
    ref = await startTorchServeReference({ host: '127.0.0.1' });
    backend = new TorchServeRestBackend({ endpoint: ref.httpEndpoint, maxConnections: 2 });
  });
  afterAll(async () => {
    await backend.close();
    await ref.close();
  });

  it('modelReady: a READY worker is true, no workers false, an unknown model or version NOT_FOUND', async () => {
    expect(await backend.modelReady('linear', '', soon())).toBe(true);
    expect(await backend.modelReady('linear', '1.0', soon())).toBe(true);
    expect(await backend.modelReady('unready', '', soon())).toBe(false);
    await expectGatewayError(backend.modelReady('nosuch', '', soon()), 'NOT_FOUND', 'Model not found: nosuch');
    await expectGatewayError(backend.modelReady('linear', '9.9', soon()), 'NOT_FOUND', /9\.9/);
  });

  it('modelMetadata: the registered versions, no tensors (TorchServe has no tensor metadata)', async () => {
    expect(await backend.modelMetadata('linear', '', soon())).toEqual({
      name: 'linear',
      versions: ['1.0', '2.0'],
      platform: 'pytorch_torchserve',
      inputs: [],
      outputs: [],
    });
    expect((await backend.modelMetadata('linear', '1.0', soon())).versions).toEqual(['1.0']);
    await expectGatewayError(backend.modelMetadata('nosuch', '', soon()), 'NOT_FOUND');
  });

  it('sends JSON mode as one JSON object body', async () => {
    await backend.infer(simpleRequest(), soon());
    const sent = ref.stats.lastRequest!;
    expect(sent.headers['content-type']).toBe('application/json');
    expect(Object.keys(JSON.parse(sent.body.toString()) as object)).toEqual(['INPUT0', 'INPUT1']);
    await backend.infer(linearRequest([[1, 2, 3, 4]]), soon());
    expect(ref.stats.lastRequest!.body.toString()).toBe('{"INPUT0":[[1,2,3,4]]}');
  });

  it('errors keep TorchServe status and exception type', async () => {
    const err = await expectGatewayError(backend.infer(linearRequest([[1, 2, 3, 4]], '7.0'), soon()), 'NOT_FOUND');
    expect(err).toBeInstanceOf(TorchServeError);
    expect(err).toMatchObject({ status: 404, type: 'ModelVersionNotFoundException' });
  });
});

describe('TorchServe REST errors', () => {
  const body = (o: object) => Buffer.from(JSON.stringify(o));

  it('507 is RESOURCE_EXHAUSTED; a token refusal UNAUTHENTICATED; the message is passed on', () => {
    expect(restError(507, body({ code: 507, type: 'ServiceUnavailableException', message: 'Out of resources' }))).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      message: 'Out of resources',
      status: 507,
    });
    const key = restError(400, body({ code: 400, type: 'InvalidKeyException', message: 'Token Authorization failed.' }));
    expect(key.code).toBe('UNAUTHENTICATED');
    expect(restError(500, body({ code: 500, type: 'InternalServerException', message: 'boom' })).code).toBe('INTERNAL');
  });

  it('a body that is not error JSON gives an excerpt, an empty 413 a message of its own', () => {
    expect(restError(502, Buffer.from('<html>bad   gateway</html>')).message).toBe('<html>bad gateway</html>');
    expect(restError(413, Buffer.alloc(0))).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/too large/) });
  });
});

describe('TorchServe REST adapter without a management API on its port (real TorchServe 8080)', () => {
  let server: http.Server;
  let backend: TorchServeRestBackend;

  beforeAll(async () => {
    // /ping answers, any other path is TorchServe's 404 for an unknown route.
    server = http.createServer((req, res) => {
      const [status, payload] =
        req.url === '/ping'
          ? [200, { status: 'Healthy' }]
          : [404, { code: 404, type: 'ResourceNotFoundException', message: 'Requested resource is not found, please refer to API document.' }];
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    backend = new TorchServeRestBackend({ endpoint: `127.0.0.1:${(server.address() as AddressInfo).port}`, maxConnections: 1 });
  });
  afterAll(async () => {
    await backend.close();
    server.close();
  });

  it('readiness falls back to /ping and metadata to the asked version', async () => {
    expect(await backend.modelReady('anything', '', soon())).toBe(true);
    expect(await backend.modelMetadata('anything', '3', soon())).toMatchObject({ versions: ['3'], inputs: [], outputs: [] });
  });
});
