// CLI: tsx reference/torchserve/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N] [--token T]
// Prints one JSON line {"http":"host:port","grpc":"host:port"} once both servers listen, so a parent process
// can read its endpoints; exits cleanly on SIGINT/SIGTERM (see common/cli.ts).
import { runCli } from '../common/cli.js';
import { startTorchServeReference, type TorchServeReferenceOptions } from './index.js';

await runCli<TorchServeReferenceOptions>(
  {
    usage: 'usage: tsx reference/torchserve/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N] [--token T]',
    values: {
      '--token': (opts, value) => {
        opts.token = value;
      },
    },
  },
  startTorchServeReference,
);
