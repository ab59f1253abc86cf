// CLI: tsx reference/triton/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N]
//   [--max-concurrency N]
// Prints one JSON line {"http":"host:port","grpc":"host:port"} once both servers listen, so a parent process
// can read its endpoints; exits cleanly on SIGINT/SIGTERM (see common/cli.ts).
import { runCli } from '../common/cli.js';
import { startTritonReference, type TritonReferenceOptions } from './index.js';

await runCli<TritonReferenceOptions>(
  {
    usage: 'usage: tsx reference/triton/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N] [--max-concurrency N]',
    values: {
      '--max-concurrency': (opts, value, fail) => {
        const n = Number(value);
        if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < 1) fail(`invalid number for --max-concurrency: ${value}`);
        opts.maxConcurrency = n;
      },
    },
  },
  startTritonReference,
);
