import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseDocument } from 'yaml';
import { ConfigError, parseConfig } from '../config/load.js';
import { baseConfigSchema, type GatewayConfig } from '../config/schema.js';
import { parseStreamsSection, streamProcessorSchema, streamModelProblems, type StreamProcessorConfig, type StreamsConfig } from '../config/stream-schema.js';
import { zodIssueMessage } from '../config/route-schema.js';
import { createLogger } from '../observability/logger.js';
import { buildPipeline } from '../pipeline.js';
import { createRecordPredictor } from '../routing/record-predictor.js';
import { startStreamProcessors } from '../streaming/stream-runner.js';
import type { StreamProcessorMetrics } from '../streaming/stream-processor.js';
import { untilSignal } from './signals.js';

export const STREAM_USAGE = `Usage: infergate stream --config FILE [--name NAME]
       infergate stream --config FILE --redis URL --input KEY --group G --output KEY --model M [options]

Runs stream processors without the HTTP and gRPC listeners: each reads events
from a Redis Stream through a consumer group, predicts each event's record (the
JSON object in its 'data' field) through the gateway's routing, resilience,
cache and batching, and writes {input_id, model, outputs} to the output stream,
acknowledging the input only once its output is written. Events that cannot be
predicted go to the dead-letter stream. Run several for more throughput: they
share the group's events and take over each other's if one dies.

The first form runs the config's \`streams:\` section (all processors, or the
one named). The second runs one processor from flags; the config supplies the
backends and models.

Options:
  --config FILE          gateway config (default config/gateway.yaml)
  --name NAME            the processor of the streams section to run (with flags: its name)
  --redis URL            redis:// or rediss:// URL
  --input KEY            the stream read
  --group G              the consumer group (created when missing)
  --output KEY           the stream written
  --model M              public model name, as in the config
  --model-version V      model version (default: the server's choice)
  --consumer C           this consumer's name (default: <hostname>-<pid>)
  --dead-letter KEY      default: <input>:dead
  --field NAME           the event field holding the record (default data)
  --start-id ID          where a new group starts: $ (default) or 0 (the whole stream)
  --max-in-flight N      events taken and not finished at most (default 64)
  --read-count N         events per read (default 32)
  --claim-idle-ms N      pending events idle this long are taken over (default 30000)
  --claim-interval-ms N  how often they are looked for (default 5000)
  --max-deliveries N     deliveries of a failing event before its dead letter (default 5)
  --output-maxlen N      trim the output stream to about N events
  --drain-ms N           on SIGTERM/SIGINT, how long events in flight get (default server.drain_ms)

A progress line per processor goes to stderr every 5 s. SIGTERM or SIGINT stops
reading, lets events in flight finish, and exits 0; unfinished events stay
pending for the other consumers of the group.
`;

const PROGRESS_EVERY_MS = 5_000;

/** Flags of the second form -> the processor's settings keys. */
const AD_HOC_FLAGS = {
  redis: 'redis',
  input: 'input',
  group: 'group',
  output: 'output',
  model: 'model',
  'model-version': 'version',
  consumer: 'consumer',
  'dead-letter': 'dead_letter',
  field: 'field',
  'start-id': 'start_id',
  'max-in-flight': 'max_in_flight',
  'read-count': 'read_count',
  'claim-idle-ms': 'claim_idle_ms',
  'claim-interval-ms': 'claim_interval_ms',
  'max-deliveries': 'max_deliveries',
  'output-maxlen': 'output_maxlen',
} as const;
const NUMERIC_KEYS: ReadonlySet<string> = new Set(['max_in_flight', 'read_count', 'claim_idle_ms', 'claim_interval_ms', 'max_deliveries', 'output_maxlen']);

export async function streamCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        name: { type: 'string' },
        'drain-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...Object.fromEntries(Object.keys(AD_HOC_FLAGS).map((flag) => [flag, { type: 'string' as const }])),
      },
    }));
  } catch (err) {
    process.stderr.write(`infergate stream: ${(err as Error).message}\n\n${STREAM_USAGE}`);
    return 1;
  }
  if (values.help === true) {
    process.stdout.write(STREAM_USAGE);
    return 0;
  }
  const file = typeof values.config === 'string' ? values.config : 'config/gateway.yaml';
  let config: GatewayConfig;
  let selected: StreamProcessorConfig[];
  try {
    let streams: StreamsConfig;
    ({ config, streams } = await readStreamConfig(file, process.env));
    const adHoc = Object.keys(AD_HOC_FLAGS).some((flag) => values[flag] !== undefined);
    selected = adHoc ? [adHocProcessor(values)] : selectProcessors(streams, values.name as string | undefined, file);
    const problems = streamModelProblems(selected, Object.keys(config.models));
    if (problems.length > 0) throw new ConfigError(adHoc ? 'flags' : file, problems);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return 1;
  }
  const drainMs = values['drain-ms'] !== undefined ? Number(values['drain-ms']) : config.server.drain_ms;
  if (!Number.isSafeInteger(drainMs) || drainMs < 0) {
    process.stderr.write(`infergate stream: --drain-ms must be a whole number of milliseconds, got '${String(values['drain-ms'])}'\n`);
    return 1;
  }

  const logger = createLogger(config.server.log_level);
  const pipeline = buildPipeline(config, logger);
  try {
    const running = await startStreamProcessors(
      selected,
      (model, version) => createRecordPredictor(pipeline.service, { model, version, timeoutMs: config.server.request_timeout_ms }),
      logger,
    );
    const progress = setInterval(() => writeProgress(running.metrics()), PROGRESS_EVERY_MS);
    const signal = await untilSignal();
    clearInterval(progress);
    process.stderr.write(`infergate stream: ${signal}: stopping; events in flight get ${drainMs} ms, the rest stay pending for the group\n`);
    // A second signal stops at once: what is in flight stays pending, as after a crash.
    const again = (): void => process.exit(130);
    process.once('SIGINT', again);
    process.once('SIGTERM', again);
    await running.stop(drainMs);
    writeProgress(running.metrics());
    process.off('SIGINT', again);
    process.off('SIGTERM', again);
    return 0;
  } finally {
    await pipeline.close();
  }
}

/** The config file, its `streams` section included. */
async function readStreamConfig(path: string, env: NodeJS.ProcessEnv): Promise<{ config: GatewayConfig; streams: StreamsConfig }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read file: ${(err as Error).message}`]);
  }
  const config = parseConfig(text, path, env);
  return { config, streams: config.streams };
}

function selectProcessors(streams: StreamsConfig, name: string | undefined, file: string): StreamProcessorConfig[] {
  if (streams.length === 0) {
    throw new ConfigError(file, ['streams: the config has no stream processors (add a streams: section, or run one with --redis --input --group --output --model)']);
  }
  if (name === undefined) return [...streams];
  const found = streams.find((s) => s.name === name);
  if (found === undefined) throw new ConfigError(file, [`streams: no stream processor named '${name}' (its processors: ${streams.map((s) => s.name).join(', ')})`]);
  return [found];
}

/** One processor from the flags, validated by the same schema as the config section (problems name the flags). */
function adHocProcessor(values: Record<string, string | boolean | undefined>): StreamProcessorConfig {
  const raw: Record<string, unknown> = {};
  const flagOf = new Map<string, string>();
  for (const [flag, key] of Object.entries(AD_HOC_FLAGS)) {
    flagOf.set(key, `--${flag}`);
    const value = values[flag];
    if (typeof value !== 'string') continue;
    raw[key] = NUMERIC_KEYS.has(key) && /^-?\d+$/.test(value) ? Number(value) : value;
  }
  const input = typeof raw.input === 'string' ? raw.input : 'stream';
  raw.name = typeof values.name === 'string' ? values.name : input.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[_.-]+/, '') || 'stream';
  flagOf.set('name', '--name');
  const parsed = streamProcessorSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    'flags',
    parsed.error.issues.map((issue) => {
      const key = issue.path[0];
      const what = typeof key === 'string' ? (flagOf.get(key) ?? key) : '(flags)';
      const missing = issue.code === 'invalid_type' && typeof key === 'string' && raw[key] === undefined;
      return `${what}: ${missing ? 'is required' : zodIssueMessage(issue)}`;
    }),
  );
}

function writeProgress(metrics: Record<string, StreamProcessorMetrics>): void {
  for (const m of Object.values(metrics)) process.stderr.write(`${progressLine(m)}\n`);
}

/** `stream fraud-events: in 1200 out 1180 failed 3 dead-lettered 1 in-flight 16 lag 42`: one processor, for logs. */
export function progressLine(m: StreamProcessorMetrics): string {
  return (
    `stream ${m.name}: in ${m.events_in} out ${m.events_out} failed ${m.events_failed} dead-lettered ${m.events_dead_lettered}` +
    ` in-flight ${m.in_flight} lag ${m.lag ?? '?'}${m.connected ? '' : ' (redis unavailable)'}`
  );
}
