import type { BackendConfig } from '../config/schema.js';
import type { Backend, BackendKind, BackendProtocol, EndpointOptions } from './backend.js';
import { BackendCluster } from './cluster.js';
import { TritonGrpcBackend } from './triton/grpc.js';
import { TritonRestBackend } from './triton/rest.js';

type AdapterOptions = EndpointOptions & { readonly maxMessageBytes: number };
type AdapterFactory = (opts: AdapterOptions) => Backend;

/** One adapter per server kind and protocol; adding a server means adding a row. */
const ADAPTERS: Readonly<Partial<Record<BackendKind, Readonly<Record<BackendProtocol, AdapterFactory>>>>> = {
  triton: {
    rest: (opts) => new TritonRestBackend(opts),
    grpc: (opts) => new TritonGrpcBackend(opts),
  },
};

export function createBackendCluster(name: string, config: BackendConfig, maxMessageBytes: number): BackendCluster {
  const factory = ADAPTERS[config.kind]?.[config.protocol];
  if (factory === undefined) throw new Error(`backends.${name}: no adapter for kind '${config.kind}' yet`);
  const endpoints = config.endpoints.map((endpoint) =>
    factory({ endpoint, maxConnections: config.max_connections, maxMessageBytes }),
  );
  const health = config.health_check;
  return new BackendCluster(name, config.kind, config.protocol, config.timeout_ms, endpoints, {
    intervalMs: health.interval_ms,
    timeoutMs: health.timeout_ms,
    unhealthyAfter: health.unhealthy_after,
  });
}
