// The command line the three references share: `tsx reference/<server>/main.ts [--host H] [--http-port N]
// [--grpc-port N] [--latency-ms N] ...`. It prints one JSON line {"http":"host:port","grpc":"host:port"} once
// both servers listen, so a parent process can read its endpoints, and exits cleanly on SIGINT/SIGTERM.
// Flags a server adds (a token, a response form) are declared by its own main.ts.
import type { ListenOptions, ReferenceServers } from './listen.js';

export interface CliOptions extends ListenOptions {
  latencyMs?: number;
}

export interface CliSpec<O extends CliOptions> {
  usage: string;
  /** Flags that take no value. */
  switches?: Readonly<Record<string, (opts: O) => void>>;
  /** Flags that take a string value; `fail` rejects the value with a usage error. */
  values?: Readonly<Record<string, (opts: O, value: string, fail: (message: string) => never) => void>>;
}

/** Parses argv (without node and the script); prints usage and exits on --help or on a bad flag. */
export function parseArgs<O extends CliOptions>(argv: readonly string[], spec: CliSpec<O>): O {
  const fail = (message: string): never => {
    process.stderr.write(`${message}\n${spec.usage}\n`);
    process.exit(2);
  };
  const opts = {} as O;
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] ?? '';
    const value = argv[i + 1];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${spec.usage}\n`);
      process.exit(0);
    }
    // hasOwn, so a flag such as "constructor" cannot reach Object.prototype.
    if (spec.switches && Object.hasOwn(spec.switches, flag)) {
      spec.switches[flag]?.(opts);
      i--; // a switch: no value follows
      continue;
    }
    if (value === undefined) fail(`missing value for ${flag}`);
    if (value === undefined) continue; // unreachable: fail() exits; narrows value for the compiler
    if (flag === '--host') {
      opts.host = value;
      continue;
    }
    if (spec.values && Object.hasOwn(spec.values, flag)) {
      spec.values[flag]?.(opts, value, fail);
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

/** Parses process.argv, starts the servers, prints their endpoints and closes them on SIGINT/SIGTERM. */
export async function runCli<O extends CliOptions>(spec: CliSpec<O>, start: (opts: O) => Promise<ReferenceServers>): Promise<void> {
  const reference = await start(parseArgs(process.argv.slice(2), spec));
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
}
