// CLI: tsx reference/torchserve/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N] [--token T]
// Prints one JSON line {"http":"host:port","grpc":"host:port"} once both servers listen, so a parent process
// can read its endpoints; exits cleanly on SIGINT/SIGTERM.
import { startTorchServeReference, type TorchServeReferenceOptions } from './index.js';

const USAGE = 'usage: tsx reference/torchserve/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N] [--token T]';

function parseArgs(argv: readonly string[]): TorchServeReferenceOptions {
  const opts: TorchServeReferenceOptions = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (value === undefined) fail(`missing value for ${flag}`);
    if (flag === '--host') {
      opts.host = value;
      continue;
    }
    if (flag === '--token') {
      opts.token = value;
      continue;
    }
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || (flag !== '--latency-ms' && n > 65535)) fail(`invalid number for ${flag}: ${value}`);
    if (flag === '--http-port') opts.httpPort = n;
    else if (flag === '--grpc-port') opts.grpcPort = n;
    else if (flag === '--latency-ms') opts.latencyMs = n;
    else fail(`unknown option ${flag}`);
  }
  return opts;
}

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

const reference = await startTorchServeReference(parseArgs(process.argv.slice(2)));
process.stdout.write(`${JSON.stringify({ http: reference.httpEndpoint, grpc: reference.grpcEndpoint })}\n`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    reference.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`error while closing: ${String(err)}\n`);
        process.exit(1);
      },
    );
  });
}
