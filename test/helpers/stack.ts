import { Pool } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { silentLogger } from '../../src/observability/logger.js';
import { startTritonReference, type TritonReference } from '../../reference/triton/index.js';

export const DATATYPE_NAMES = [
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'BF16', 'FP32', 'FP64', 'BYTES',
] as const;

/** A reference Triton server and a gateway in front of it, both on free loopback ports. */
export interface Stack {
  readonly triton: TritonReference;
  readonly gateway: RunningGateway;
  readonly http: Pool;
  readonly httpBase: string;
  readonly grpcAddress: string;
  close(): Promise<void>;
}

/**
 * Models exposed by the test gateway: every reference model twice, once through
 * a gRPC backend (`<name>`) and once through a REST backend (`<name>@rest`
 * would not be a valid name, so `rest.<name>`).
 */
export function stackConfig(triton: TritonReference, overrides: Partial<Record<string, unknown>> = {}): GatewayConfig {
  const models: Record<string, unknown> = {};
  const names = ['linear', 'simple', 'unready', ...DATATYPE_NAMES.map((d) => `identity_${d.toLowerCase()}`)];
  for (const name of names) {
    models[name] = { backend: 'triton-grpc' };
    models[`rest.${name}`] = { backend: 'triton-rest', model: name };
  }
  models['linear-v1'] = { backend: 'triton-grpc', model: 'linear', version: '1' };
  models['ghost'] = { backend: 'triton-grpc', model: 'no_such_model' };
  models['down'] = { backend: 'nowhere-grpc', model: 'linear' };
  models['rest.down'] = { backend: 'nowhere-rest', model: 'linear' };
  return validateConfig({
    server: {
      http: { host: '127.0.0.1', port: 0 },
      grpc: { host: '127.0.0.1', port: 0 },
      max_body_bytes: 1024 * 1024,
      request_timeout_ms: 5000,
      log_level: 'silent',
    },
    // Access control is tested in test/auth; these tests call without credentials.
    auth: { enabled: false },
    backends: {
      'triton-grpc': { kind: 'triton', protocol: 'grpc', endpoints: [triton.grpcEndpoint] },
      'triton-rest': { kind: 'triton', protocol: 'rest', endpoints: [triton.httpEndpoint] },
      // Port 1 on loopback: nothing listens there, so connections are refused at once.
      'nowhere-grpc': { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] },
      'nowhere-rest': { kind: 'triton', protocol: 'rest', endpoints: ['127.0.0.1:1'] },
    },
    models,
    ...overrides,
  });
}

export async function startStack(): Promise<Stack> {
  const triton = await startTritonReference({ host: '127.0.0.1' });
  const gateway = await startGateway(stackConfig(triton), silentLogger);
  const httpBase = `http://127.0.0.1:${gateway.httpPort}`;
  const http = new Pool(httpBase, { connections: 8 });
  return {
    triton,
    gateway,
    http,
    httpBase,
    grpcAddress: `127.0.0.1:${gateway.grpcPort}`,
    async close() {
      await http.close();
      await gateway.close(1000);
      await triton.close();
    },
  };
}
