/** The demo's model servers: reference Triton, TF Serving and TorchServe on free loopback ports. */
export interface DemoBackends {
  /** The environment overrides pointing config/demo.yaml's backends at them, merged over `base`. */
  readonly env: NodeJS.ProcessEnv;
  /** Where each listens, for the demo's banner. */
  readonly endpoints: { readonly tritonHttp: string; readonly tritonGrpc: string; readonly tfservingGrpc: string; readonly torchserveHttp: string };
  close(): Promise<void>;
}

/**
 * Starts the reference servers (test fixtures, loaded only for the demo) and
 * returns the overrides that replace the demo config's backend endpoints; the
 * same overrides apply to reloads of the file.
 */
export async function startDemoBackends(base: NodeJS.ProcessEnv): Promise<DemoBackends> {
  const [{ startTritonReference }, { startTfServingReference }, { startTorchServeReference }] = await Promise.all([
    import('../../reference/triton/index.js'),
    import('../../reference/tfserving/index.js'),
    import('../../reference/torchserve/index.js'),
  ]);
  const servers = await Promise.all([
    startTritonReference({ host: '127.0.0.1' }),
    startTfServingReference({ host: '127.0.0.1' }),
    startTorchServeReference({ host: '127.0.0.1' }),
  ]);
  const [triton, tfserving, torchserve] = servers;
  return {
    env: {
      ...base,
      INFERGATE_BACKEND_TRITON_GRPC_ENDPOINTS: triton.grpcEndpoint,
      INFERGATE_BACKEND_TRITON_REST_ENDPOINTS: triton.httpEndpoint,
      INFERGATE_BACKEND_TFSERVING_GRPC_ENDPOINTS: tfserving.grpcEndpoint,
      INFERGATE_BACKEND_TORCHSERVE_REST_ENDPOINTS: torchserve.httpEndpoint,
    },
    endpoints: {
      tritonHttp: triton.httpEndpoint,
      tritonGrpc: triton.grpcEndpoint,
      tfservingGrpc: tfserving.grpcEndpoint,
      torchserveHttp: torchserve.httpEndpoint,
    },
    close: async () => {
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}
