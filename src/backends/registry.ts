import type { BackendConfig } from '../config/schema.js';
import type { Backend, BackendKind, BackendProtocol, EndpointOptions } from './backend.js';
import { BackendCluster } from './cluster.js';
import { TfServingGrpcBackend } from './tfserving/grpc.js';
import { TfServingRestBackend } from './tfserving/rest.js';
import { TorchServeGrpcBackend } from './torchserve/grpc.js';
import { TorchServeRestBackend } from './torchserve/rest.js';
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
  tfserving: {
    rest: (opts) => new TfServingRestBackend(opts),
    grpc: (opts) => new TfServingGrpcBackend(opts),
  },
  torchserve: {
    rest: (opts) => new TorchServeRestBackend(opts),
    grpc: (opts) => new TorchServeGrpcBackend(opts),
  },
};

export function createBackendCluster(name: string, config: BackendConfig, maxMessageBytes: number): BackendCluster {
  const factory = ADAPTERS[config.kind][config.protocol];
  const endpoints = config.endpoints.map(({ address }) =>
    factory({ endpoint: address, maxConnections: config.max_connections, maxMessageBytes }),
  );
  const health = config.health_check;
  const lb = config.load_balancing;
  return new BackendCluster(
    name,
    config.kind,
    config.protocol,
    config.timeout_ms,
    endpoints,
    { intervalMs: health.interval_ms, timeoutMs: health.timeout_ms, unhealthyAfter: health.unhealthy_after },
    // The balancer (ring, weights) is built here, once per config, not per request.
    {
      policy: lb.policy,
      weights: config.endpoints.map((e) => e.weight),
      ...(lb.hash_header !== undefined ? { hashHeader: lb.hash_header } : {}),
    },
  );
}
