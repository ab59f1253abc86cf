// CLI: tsx reference/tfserving/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N]
//        [--response-form typed|tensor_content] [--broadcast-scalars]
// Prints one JSON line {"http":"host:port","grpc":"host:port"} once both servers listen, so a parent process
// can read its endpoints; exits cleanly on SIGINT/SIGTERM (see common/cli.ts).
import { runCli } from '../common/cli.js';
import { startTfServingReference, type TfServingReferenceOptions } from './index.js';

await runCli<TfServingReferenceOptions>(
  {
    usage: 'usage: tsx reference/tfserving/main.ts [--host H] [--http-port N] [--grpc-port N] [--latency-ms N] '
      + '[--response-form typed|tensor_content] [--broadcast-scalars]',
    switches: {
      '--broadcast-scalars': (opts) => {
        opts.broadcastScalars = true;
      },
    },
    values: {
      '--response-form': (opts, value, fail) => {
        if (value !== 'typed' && value !== 'tensor_content') fail(`invalid value for --response-form: ${value}`);
        else opts.responseForm = value;
      },
    },
  },
  startTfServingReference,
);
