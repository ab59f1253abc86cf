import { parseArgs } from 'node:util';
import { loadConfigFile } from '../config/load.js';
import { runBatch, type BatchProgress, type BatchSpec } from '../jobs/batch-runner.js';
import { createLogger } from '../observability/logger.js';
import { buildPipeline } from '../pipeline.js';
import { createRecordPredictor } from '../routing/record-predictor.js';
import { startDemoBackends } from './demo-backends.js';

export const BATCH_USAGE = `Usage: infergate batch --model M --input FILE --output FILE [options]

Predicts every row of FILE (JSONL, CSV or Parquet, by extension) through the
gateway's routing, resilience, cache and batching, and writes one output row
per input row. Rows that fail go to the error file with the reason. A run that
is stopped or killed resumes where it was when started again with the same
files: each row ends up in the output or error file exactly once.

Options:
  --config FILE        gateway config with the model's backends (default config/gateway.yaml)
  --demo               run against the demo's reference servers, started on loopback
                       (config/demo.yaml unless --config): no external service needed
  --model M            public model name, as in the config
  --model-version V    model version (default: the server's choice)
  --input FILE         .jsonl/.ndjson, .csv or .parquet
  --output FILE        .jsonl, .csv or .parquet
  --errors FILE        rows that failed, as JSONL (default: OUTPUT.errors.jsonl)
  --batch-size N       rows per backend request (default 32)
  --concurrency N      requests in flight (default 4)
  --id-field NAME      input field copied to output rows (default: id)
  --input-format F     jsonl|csv|parquet, when the extension does not say
  --output-format F    jsonl|csv|parquet, likewise

Exit status: 0 every row predicted, 3 some rows in the error file, 130 stopped
by a signal (resumable), 1 the job could not run.
`;

/** Progress lines on a terminal are redrawn this often; elsewhere a plain line is printed every PLAIN_EVERY_MS. */
const TTY_EVERY_MS = 250;
const PLAIN_EVERY_MS = 5_000;

export async function batchCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      demo: { type: 'boolean' },
      model: { type: 'string', short: 'm' },
      'model-version': { type: 'string' },
      input: { type: 'string', short: 'i' },
      output: { type: 'string', short: 'o' },
      errors: { type: 'string' },
      'batch-size': { type: 'string' },
      concurrency: { type: 'string' },
      'id-field': { type: 'string' },
      'input-format': { type: 'string' },
      'output-format': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(BATCH_USAGE);
    return 0;
  }
  const missing = (['model', 'input', 'output'] as const).filter((k) => values[k] === undefined);
  if (missing.length > 0) {
    process.stderr.write(`infergate batch: missing ${missing.map((k) => `--${k}`).join(', ')}\n\n${BATCH_USAGE}`);
    return 1;
  }
  const spec: BatchSpec = {
    input: values.input!,
    output: values.output!,
    errors: values.errors ?? `${values.output!}.errors.jsonl`,
    batchSize: positiveInt(values['batch-size'], 'batch-size', 32),
    concurrency: positiveInt(values.concurrency, 'concurrency', 4),
    ...(values['id-field'] !== undefined ? { idField: values['id-field'] } : {}),
    ...(values['input-format'] !== undefined ? { inputFormat: values['input-format'] as BatchSpec['inputFormat'] } : {}),
    ...(values['output-format'] !== undefined ? { outputFormat: values['output-format'] as BatchSpec['outputFormat'] } : {}),
  };
  const demo = values.demo === true ? await startDemoBackends(process.env) : undefined;
  try {
    return await runCommand(spec, values.model!, values['model-version'] ?? '', values.config ?? (demo !== undefined ? 'config/demo.yaml' : 'config/gateway.yaml'), demo?.env ?? process.env);
  } finally {
    await demo?.close();
  }
}

async function runCommand(spec: BatchSpec, model: string, version: string, configFile: string, env: NodeJS.ProcessEnv): Promise<number> {
  const config = await loadConfigFile(configFile, env);
  if (!(model in config.models)) {
    process.stderr.write(`infergate batch: model '${model}' is not in the config (its models: ${Object.keys(config.models).join(', ')})\n`);
    return 1;
  }
  const logger = createLogger(config.server.log_level);
  const pipeline = buildPipeline(config, logger);
  const stop = new AbortController();
  const onSignal = (): void => {
    if (stop.signal.aborted) process.exit(130);
    process.stderr.write('\ninfergate batch: stopping; rows in flight are dropped and predicted again on resume\n');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const tty = process.stderr.isTTY === true;
  try {
    const predictor = createRecordPredictor(pipeline.service, {
      model,
      version,
      timeoutMs: config.server.request_timeout_ms,
    });
    const summary = await runBatch(spec, predictor, {
      signal: stop.signal,
      progressIntervalMs: tty ? TTY_EVERY_MS : PLAIN_EVERY_MS,
      onProgress: (p) => process.stderr.write(tty ? `\r${progressBar(p)}\u001b[K` : `${progressLine(p)}\n`),
    });
    if (tty) process.stderr.write('\n');
    process.stderr.write(
      `infergate batch: ${summary.state}: ${summary.succeeded} rows predicted, ${summary.failed} failed` +
        `${summary.resumed > 0 ? ` (${summary.resumed} done by an earlier run)` : ''}` +
        ` at ${Math.round(summary.rowsPerSecond)} rows/s; output ${spec.output}` +
        `${summary.failed > 0 ? `, errors ${spec.errors}` : ''}\n`,
    );
    if (summary.state === 'cancelled') return 130;
    return summary.failed > 0 ? 3 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pipeline.close();
  }
}

function positiveInt(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got '${text}'`);
  return n;
}

/** `rows 4,000/10,000 (40%) 1,234 rows/s ETA 5s errors 3`: the plain form, for logs. */
export function progressLine(p: BatchProgress): string {
  const of = p.total !== undefined ? `/${p.total.toLocaleString('en-US')}` : '';
  const pct = p.total !== undefined && p.total > 0 ? ` (${Math.floor((100 * p.done) / p.total)}%)` : '';
  const eta = p.etaSeconds !== undefined ? ` ETA ${formatSeconds(p.etaSeconds)}` : '';
  return `rows ${p.done.toLocaleString('en-US')}${of}${pct} ${Math.round(p.rowsPerSecond).toLocaleString('en-US')} rows/s${eta} errors ${p.failed}`;
}

/** The same with a bar, for a terminal. */
function progressBar(p: BatchProgress): string {
  const width = 24;
  const filled = p.total !== undefined && p.total > 0 ? Math.min(width, Math.round((width * p.done) / p.total)) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${progressLine(p)}`;
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
