// CLI: tsx reference/triton/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N]
// Prints one JSON line {"http":"host:port","grpc":"host:port"} once both servers listen, so a parent process
// can read its endpoints; exits cleanly on SIGINT/SIGTERM (see common/cli.ts).
import { runCli } from '../common/cli.js';
import { startTritonReference, type TritonReferenceOptions } from './index.js';

await runCli<TritonReferenceOptions>(
  { usage: 'usage: tsx reference/triton/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N]' },
  startTritonReference,
);
