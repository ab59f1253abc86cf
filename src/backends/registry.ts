import type { BackendConfig } from '../config/schema.js';
import type { Backend, BackendKind, BackendProtocol, EndpointOptions } from './backend.js';
import { BackendCluster } from './cluster.js';
import { TritonGrpcBackend } from './triton/grpc.js';
import { TritonRestBackend } from './triton/rest.js';

type AdapterOptions = EndpointOptions & { readonly maxMessageBytes: number };
type AdapterFactory = (opts: AdapterOptions) => Backend;

/** One adapter per server kind and protocol; adding a server means adding a row. */
const ADAPTERS: Readonly<Record<BackendKind, Readonly<Record<BackendProtocol, AdapterFactory>>>> = {
  triton: {
    rest: (opts) => new TritonRestBackend(opts),
    grpc: (opts) => new TritonGrpcBackend(opts),
  },
};

export function createBackendCluster(name: string, config: BackendConfig, maxMessageBytes: number): BackendCluster {
  const factory = ADAPTERS[config.kind][config.protocol];
  const endpoints = config.endpoints.map((endpoint) =>
    factory({ endpoint, maxConnections: config.max_connections, maxMessageBytes }),
  );
  return new BackendCluster(name, config.kind, config.protocol, config.timeout_ms, endpoints);
}
