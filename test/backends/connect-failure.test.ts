import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';
import type { Backend } from '../../src/backends/backend.js';
import { TritonGrpcBackend } from '../../src/backends/triton/grpc.js';
import { TritonRestBackend } from '../../src/backends/triton/rest.js';
import type { GatewayError } from '../../src/core/errors.js';

/**
 * Routing falls back on `connect_failure` only when the backend never
 * answered: both call helpers mark that, and only that, on the error.
 */

let triton: TritonReference;
beforeAll(async () => {
  triton = await startTritonReference({ host: '127.0.0.1' });
});
afterAll(async () => {
  await triton?.close();
});

const opts = { maxConnections: 2, maxMessageBytes: 1 << 20 };
const adapters = {
  rest: (endpoint: string): Backend => new TritonRestBackend({ endpoint, ...opts }),
  grpc: (endpoint: string): Backend => new TritonGrpcBackend({ endpoint, ...opts }),
};
const request = { model: 'linear', version: '', inputs: [] };

async function errorOf(p: Promise<unknown>): Promise<GatewayError> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e as GatewayError,
  );
}

describe.each(Object.entries(adapters))('%s calls', (protocol, make) => {
  it('an endpoint nobody listens on is UNAVAILABLE, marked as a connection failure', async () => {
    const backend = make('127.0.0.1:1');
    try {
      const err = await errorOf(backend.infer(request, { deadline: Date.now() + 2000 }));
      expect([err.code, err.transport]).toEqual(['UNAVAILABLE', 'connect']);
    } finally {
      await backend.close();
    }
  });

  it("a server's own error is not marked", async () => {
    const backend = make(protocol === 'rest' ? triton.httpEndpoint : triton.grpcEndpoint);
    try {
      const err = await errorOf(backend.infer({ ...request, model: 'no_such_model' }, { deadline: Date.now() + 2000 }));
      expect(err.code).toBe('NOT_FOUND');
      expect(err.transport).toBeUndefined();
      const unready = await errorOf(backend.infer({ ...request, model: 'unready' }, { deadline: Date.now() + 2000 }));
      expect(unready.code).toBe('UNAVAILABLE'); // the server said so: not a connection failure
      expect(unready.transport).toBeUndefined();
    } finally {
      await backend.close();
    }
  });
});
