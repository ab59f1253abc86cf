import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseStreamsSection, streamProcessorSchema, type StreamProcessorConfig, type StreamProcessorInput } from '../../src/config/stream-schema.js';
import { createLogger, silentLogger, type Logger } from '../../src/observability/logger.js';
import { StreamProcessor, type StreamProcessorMetrics } from '../../src/streaming/stream-processor.js';
import { startStreamProcessors } from '../../src/streaming/stream-runner.js';
import { until } from '../helpers/live.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { DoublingPredictor } from './doubling-predictor.js';

let redis: RedisServer;
let client: Redis;
let keys = 0;
const started: { stop(drainMs?: number): Promise<void> }[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.stop(0)));
});

afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

/** A fresh input stream key per test, so tests share one Redis without seeing each other's events. */
function streamKey(): string {
  return `events-${++keys}`;
}

function config(input: string, over: Partial<StreamProcessorInput> = {}): StreamProcessorConfig {
  return streamProcessorSchema.parse({
    name: `p-${input}`,
    redis: redis.url,
    input,
    group: 'g',
    consumer: 'c1',
    output: `${input}:out`,
    model: 'double',
    start_id: '0',
    block_ms: 100,
    ...over,
  });
}

async function startProcessor(settings: StreamProcessorConfig, predictor: DoublingPredictor, logger: Logger = silentLogger): Promise<StreamProcessor> {
  const p = new StreamProcessor(settings, predictor, logger);
  started.push(p);
  await p.start();
  return p;
}

async function addEvents(key: string, payloads: readonly string[]): Promise<string[]> {
  const pipeline = client.pipeline();
  for (const data of payloads) pipeline.xadd(key, '*', 'data', data);
  const results = (await pipeline.exec()) ?? [];
  return results.map(([err, id]) => {
    if (err) throw err;
    return id as string;
  });
}

type Event = { id: string } & Record<string, string>;

async function readAll(key: string): Promise<Event[]> {
  const entries = await client.xrange(key, '-', '+');
  return entries.map(([id, fields]) => {
    const event: Event = { id };
    for (let i = 0; i + 1 < fields.length; i += 2) event[fields[i]!] = fields[i + 1]!;
    return event;
  });
}

async function streamLength(key: string): Promise<number> {
  return client.xlen(key);
}

/** The group's pending count (delivered, not acknowledged), all consumers. */
async function pendingCount(key: string, group = 'g'): Promise<number> {
  const summary = (await client.xpending(key, group)) as [number, ...unknown[]];
  return summary[0];
}

function expectBalanced(m: StreamProcessorMetrics): void {
  expect(m.events_in).toBe(m.events_out + m.events_failed + m.events_dead_lettered + m.events_left_pending + m.in_flight);
}

describe('StreamProcessor', () => {
  it('writes one output event per input event, with input_id and outputs, and acknowledges each', async () => {
    const input = streamKey();
    const predictor = new DoublingPredictor();
    const p = await startProcessor(config(input, { read_count: 8 }), predictor);
    const ids = await addEvents(input, Array.from({ length: 40 }, (_, i) => JSON.stringify({ x: i, v: [i, [i + 1]] })));

    await until(async () => (await streamLength(`${input}:out`)) === 40, 10_000, 'outputs');
    const out = await readAll(`${input}:out`);
    expect(out.map((e) => e.input_id).sort()).toEqual([...ids].sort());
    for (const e of out) {
      const i = ids.indexOf(e.input_id!);
      expect(e.model).toBe('double');
      expect(JSON.parse(e.outputs!)).toEqual({ x: 2 * i, v: [2 * i, [2 * i + 2]] });
    }
    await until(async () => (await pendingCount(input)) === 0, 5_000, 'no pending entries');
    // Batches of at most read_count records.
    expect(predictor.calls).toBeGreaterThanOrEqual(5);

    const m = p.metrics();
    expect(m).toMatchObject({ name: `p-${input}`, consumer: 'c1', events_in: 40, events_out: 40, events_failed: 0, events_dead_lettered: 0, in_flight: 0, connected: true });
    expect(m.latency_ms.count).toBe(40);
    expect(m.latency_ms.sum).toBeGreaterThan(0);
    expect(m.latency_ms.p50).not.toBeNull();
    expect(m.latency_ms.p99!).toBeGreaterThanOrEqual(m.latency_ms.p50!);
    expectBalanced(m);
  });

  it('trims the output to about output_maxlen events and reports the group lag', async () => {
    const input = streamKey();
    const p = await startProcessor(config(input, { output_maxlen: 10, claim_interval_ms: 50 }), new DoublingPredictor());
    await addEvents(input, Array.from({ length: 600 }, (_, i) => JSON.stringify({ x: i })));
    await until(() => p.metrics().events_out === 600, 20_000, 'all processed');
    // MAXLEN ~ trims whole macro nodes (100 entries by default): far fewer than 600 remain.
    expect(await streamLength(`${input}:out`)).toBeLessThan(600);
    await until(() => p.metrics().lag === 0, 5_000, 'lag 0');
  });

  it('leaves the events of a processor stopped mid-way pending, never acknowledged', async () => {
    const input = streamKey();
    // It ignores the abort: the batch finishes after the drain time, and must still not be written.
    const predictor = new DoublingPredictor({ ignoreAbort: true });
    predictor.hold();
    const p = await startProcessor(config(input), predictor);
    await addEvents(input, Array.from({ length: 6 }, (_, i) => JSON.stringify({ x: i })));
    await until(() => predictor.concurrentRecords === 6, 5_000, 'records in the predictor');

    await p.stop(100);
    predictor.release();
    await new Promise((r) => setTimeout(r, 100));
    expect(await streamLength(`${input}:out`)).toBe(0);
    expect(await pendingCount(input)).toBe(6);
    const m = p.metrics();
    expect(m).toMatchObject({ events_in: 6, events_out: 0, events_left_pending: 6, in_flight: 0 });
    expectBalanced(m);
  });

  it('a processor stopped with a predictor that honours the abort leaves its events pending for another to claim', async () => {
    const input = streamKey();
    const slow = new DoublingPredictor();
    slow.hold();
    const a = await startProcessor(config(input, { consumer: 'a' }), slow);
    const ids = await addEvents(input, Array.from({ length: 5 }, (_, i) => JSON.stringify({ x: i })));
    await until(() => slow.concurrentRecords === 5, 5_000, 'records in the predictor');
    await a.stop(50);
    expect(await pendingCount(input)).toBe(5);

    const b = await startProcessor(config(input, { consumer: 'b', claim_idle_ms: 100, claim_interval_ms: 50 }), new DoublingPredictor());
    await until(async () => (await streamLength(`${input}:out`)) === 5, 10_000, 'claimed and processed by b');
    expect((await readAll(`${input}:out`)).map((e) => e.input_id).sort()).toEqual([...ids].sort());
    expect(b.metrics().events_claimed).toBe(5);
    await until(async () => (await pendingCount(input)) === 0, 5_000, 'nothing pending');
  });

  it('sends a record that cannot succeed to the dead letter at once, with its error and data, and the rest flow on', async () => {
    const input = streamKey();
    const p = await startProcessor(config(input), new DoublingPredictor());
    const good1 = await addEvents(input, Array.from({ length: 5 }, (_, i) => JSON.stringify({ x: i })));
    const [poison, notJson, array] = await addEvents(input, [JSON.stringify({ poison: true, x: 1 }), '{not json', '[1,2]']);
    const missing = (await client.xadd(input, '*', 'other', '1'))!;
    const good2 = await addEvents(input, Array.from({ length: 5 }, (_, i) => JSON.stringify({ x: 10 + i })));

    await until(async () => (await streamLength(`${input}:out`)) === 10 && (await streamLength(`${input}:dead`)) === 4, 10_000, 'outputs and dead letters');
    expect((await readAll(`${input}:out`)).map((e) => e.input_id).sort()).toEqual([...good1, ...good2].sort());
    const dead = new Map((await readAll(`${input}:dead`)).map((e) => [e.input_id, e]));
    expect(dead.get(poison)).toMatchObject({
      stream: input,
      group: 'g',
      consumer: 'c1',
      deliveries: '1',
      error_code: 'INVALID_ARGUMENT',
      error: 'poisoned record',
      data: JSON.stringify({ poison: true, x: 1 }),
    });
    expect(dead.get(notJson)).toMatchObject({ error_code: 'INVALID_ARGUMENT', data: '{not json' });
    expect(dead.get(notJson)!.error).toMatch(/'data' field is not JSON/);
    expect(dead.get(array)!.error).toMatch(/must be a JSON object/);
    expect(dead.get(missing)).toMatchObject({ error_code: 'INVALID_ARGUMENT', data: '' });
    expect(dead.get(missing)!.error).toMatch(/no 'data' field \(its fields: other\)/);

    await until(async () => (await pendingCount(input)) === 0, 5_000, 'nothing pending');
    const m = p.metrics();
    expect(m).toMatchObject({ events_in: 14, events_out: 10, events_dead_lettered: 4, events_failed: 0 });
    expectBalanced(m);
  });

  it('retries a retryable failure through the pending list and dead-letters it after max_deliveries', async () => {
    const input = streamKey();
    const p = await startProcessor(config(input, { max_deliveries: 3, claim_idle_ms: 30, claim_interval_ms: 40 }), new DoublingPredictor());
    const [flaky] = await addEvents(input, [JSON.stringify({ flaky: true })]);
    const good = await addEvents(input, Array.from({ length: 5 }, (_, i) => JSON.stringify({ x: i })));

    await until(async () => (await streamLength(`${input}:dead`)) === 1, 10_000, 'the dead letter');
    const [dead] = await readAll(`${input}:dead`);
    expect(dead).toMatchObject({ input_id: flaky, deliveries: '3', error_code: 'UNAVAILABLE', error: 'backend unavailable (flaky record)', data: '{"flaky":true}' });
    expect((await readAll(`${input}:out`)).map((e) => e.input_id).sort()).toEqual([...good].sort());
    await until(async () => (await pendingCount(input)) === 0, 5_000, 'nothing pending');
    const m = p.metrics();
    // Deliveries 1 and 2 failed and stayed pending; the third went to the dead letter.
    expect(m).toMatchObject({ events_in: 8, events_claimed: 2, events_out: 5, events_failed: 2, events_dead_lettered: 1 });
    expectBalanced(m);
  });

  it('slows its reads while every prediction fails retryably, so an outage does not burn the deliveries of the whole stream', async () => {
    const input = streamKey();
    const predictor = new DoublingPredictor();
    predictor.down = true;
    const p = await startProcessor(config(input, { read_count: 8, claim_idle_ms: 100, claim_interval_ms: 50, max_deliveries: 100 }), predictor);
    const ids = await addEvents(input, Array.from({ length: 200 }, (_, i) => JSON.stringify({ x: i })));
    await until(() => p.metrics().events_failed >= 16, 5_000, 'failures');
    await new Promise((r) => setTimeout(r, 1_000));
    // At full speed all 200 would have been read (and failed) many times over by now.
    const m = p.metrics();
    expect(m.events_in - m.events_claimed).toBeLessThan(100);
    expect(m.lag).toBeGreaterThan(100);

    predictor.down = false;
    await until(async () => (await streamLength(`${input}:out`)) >= 200, 20_000, 'all outputs once the backend is back');
    expect(new Set((await readAll(`${input}:out`)).map((e) => e.input_id))).toEqual(new Set(ids));
    expect(await streamLength(`${input}:dead`)).toBe(0);
  });

  it('never has more than max_in_flight events taken: reads ask only for the free slots', async () => {
    const input = streamKey();
    const predictor = new DoublingPredictor();
    predictor.hold();
    const p = await startProcessor(config(input, { max_in_flight: 4, read_count: 3 }), predictor);
    const ids = await addEvents(input, Array.from({ length: 30 }, (_, i) => JSON.stringify({ x: i })));
    await until(() => predictor.concurrentRecords === 4, 5_000, 'four records in the predictor');
    // Give the loop time to (wrongly) read more; then the group shows what was delivered.
    await new Promise((r) => setTimeout(r, 300));
    expect(p.metrics().in_flight).toBe(4);
    expect(await pendingCount(input)).toBe(4);
    expect(predictor.concurrentRecords).toBe(4);

    predictor.release();
    await until(async () => (await streamLength(`${input}:out`)) === 30, 10_000, 'all outputs');
    expect((await readAll(`${input}:out`)).map((e) => e.input_id).sort()).toEqual([...ids].sort());
    expect(predictor.maxConcurrentRecords).toBe(4);
  });

  it('takes over the pending events of a consumer that died (XAUTOCLAIM) after claim_idle_ms', async () => {
    const input = streamKey();
    await client.xgroup('CREATE', input, 'g', '0', 'MKSTREAM');
    const ids = await addEvents(input, Array.from({ length: 8 }, (_, i) => JSON.stringify({ x: i })));
    // A consumer reads five events and dies without acknowledging them.
    const read = (await client.xreadgroup('GROUP', 'g', 'dead-consumer', 'COUNT', 5, 'STREAMS', input, '>')) as [string, unknown[]][];
    expect(read[0]![1]).toHaveLength(5);
    // An entry deleted from the stream while pending: acknowledged away by the claim.
    await client.xdel(input, ids[0]!);

    const p = await startProcessor(config(input, { consumer: 'b', claim_idle_ms: 200, claim_interval_ms: 50 }), new DoublingPredictor());
    await until(async () => (await streamLength(`${input}:out`)) === 7, 10_000, 'all outputs');
    expect((await readAll(`${input}:out`)).map((e) => e.input_id).sort()).toEqual(ids.slice(1).sort());
    await until(async () => (await pendingCount(input)) === 0, 5_000, 'nothing pending');
    const m = p.metrics();
    expect(m).toMatchObject({ events_in: 7, events_claimed: 4, events_out: 7 });
    expectBalanced(m);
    const consumers = (await client.xinfo('CONSUMERS', input, 'g')) as unknown[][];
    const dead = consumers.find((c) => c[1] === 'dead-consumer')!;
    expect(dead[3]).toBe(0);
  });

  it('keeps its slow in-flight events from being taken over by other consumers, without raising their delivery counts', async () => {
    const input = streamKey();
    const slow = new DoublingPredictor();
    slow.hold();
    // a touches its events once they are idle for half of claim_idle_ms; the margin is wide for a loaded machine.
    const timing = { claim_idle_ms: 1_500, claim_interval_ms: 50 };
    const a = await startProcessor(config(input, { consumer: 'a', ...timing }), slow);
    const ids = await addEvents(input, Array.from({ length: 4 }, (_, i) => JSON.stringify({ x: i })));
    await until(() => slow.concurrentRecords === 4, 5_000, 'records held by a');
    const b = await startProcessor(config(input, { consumer: 'b', ...timing }), new DoublingPredictor());
    // Over twice claim_idle_ms: without a's heartbeat, b would claim them.
    await new Promise((r) => setTimeout(r, 3_500));
    expect(b.metrics().events_claimed).toBe(0);
    const pending = (await client.xpending(input, 'g', '-', '+', 10)) as [string, string, number, number][];
    expect(pending.map(([id, consumer, , deliveries]) => [id, consumer, deliveries])).toEqual(ids.map((id) => [id, 'a', 1]));

    slow.release();
    await until(async () => (await streamLength(`${input}:out`)) === 4, 5_000, 'outputs');
    expect((await readAll(`${input}:out`)).map((e) => e.input_id)).toEqual(ids);
    expect(a.metrics().events_out).toBe(4);
  }, 30_000);

  it('dead-letters a claimed event already delivered more than max_deliveries times without processing it', async () => {
    const input = streamKey();
    await client.xgroup('CREATE', input, 'g', '0', 'MKSTREAM');
    const [id] = await addEvents(input, [JSON.stringify({ x: 1 })]);
    // Crashing consumers: each took it and died.
    await client.xreadgroup('GROUP', 'g', 'crashed-1', 'COUNT', 1, 'STREAMS', input, '>');
    for (const c of ['crashed-2', 'crashed-3']) await client.xclaim(input, 'g', c, 0, id!);
    const predictor = new DoublingPredictor();
    await startProcessor(config(input, { consumer: 'b', max_deliveries: 3, claim_idle_ms: 1, claim_interval_ms: 50 }), predictor);
    await until(async () => (await streamLength(`${input}:dead`)) === 1, 10_000, 'the dead letter');
    const [dead] = await readAll(`${input}:dead`);
    expect(dead).toMatchObject({ input_id: id, deliveries: '4', error_code: 'ABORTED', data: '{"x":1}' });
    expect(predictor.records).toBe(0);
    expect(await streamLength(`${input}:out`)).toBe(0);
  });

  it('rides out a Redis restart: logs the outage once, recreates the group, and processes events again', async () => {
    const own = await startRedis();
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const ownClient = new Redis(own.url, { maxRetriesPerRequest: null });
    ownClient.on('error', () => undefined);
    try {
      const input = streamKey();
      const p = await startProcessor(config(input, { redis: own.url, claim_interval_ms: 100 }), new DoublingPredictor(), createLogger('info', sink));
      await ownClient.xadd(input, '*', 'data', '{"x":1}');
      await until(async () => (await ownClient.xlen(`${input}:out`)) === 1, 5_000, 'first output');

      await own.kill();
      await until(() => !p.metrics().connected, 5_000, 'the outage noticed');
      // While it is down the loop backs off instead of spinning.
      const errorsBefore = p.metrics().redis_errors;
      await new Promise((r) => setTimeout(r, 1_000));
      expect(p.metrics().redis_errors - errorsBefore).toBeLessThan(40);
      await own.restart();

      // No persistence: the restarted Redis is empty, and the processor makes the group again (from start_id 0).
      const [id] = [await ownClient.xadd(input, '*', 'data', '{"x":2}')];
      await until(async () => (await ownClient.xlen(`${input}:out`)) === 1, 15_000, 'output after the restart');
      const [out] = await ownClient.xrange(`${input}:out`, '-', '+');
      expect(out![1]).toContain(id);
      await until(() => p.metrics().connected, 5_000, 'connected again');

      const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(messages.filter((m) => m.startsWith('stream redis unavailable'))).toHaveLength(1);
      expect(messages.filter((m) => m.startsWith('stream redis is back'))).toHaveLength(1);
    } finally {
      await Promise.all(started.splice(0).map((p) => p.stop(0)));
      ownClient.disconnect();
      await own.stop();
    }
  });
});

describe('startStreamProcessors', () => {
  it('runs every processor, sharing one predictor per model and version, and reports metrics by name', async () => {
    const a = streamKey();
    const b = streamKey();
    const made: string[] = [];
    const connections: { role: string; redis: Redis }[] = [];
    const running = await startStreamProcessors(
      [config(a, { name: 'one' }), config(b, { name: 'two' })],
      (model, version) => {
        made.push(`${model}:${version}`);
        return new DoublingPredictor();
      },
      silentLogger,
      {
        redisFactory: (url, options, role) => {
          const redis = new Redis(url, options);
          connections.push({ role, redis });
          return redis;
        },
      },
    );
    started.push(running);
    expect(made).toEqual(['double:']);
    await addEvents(a, ['{"x":1}']);
    await addEvents(b, ['{"x":2}', '{"x":3}']);
    await until(() => running.metrics().one?.events_out === 1 && running.metrics().two?.events_out === 2, 5_000, 'outputs');
    expect(Object.keys(running.metrics()).sort()).toEqual(['one', 'two']);
    expect([...running.processors.keys()]).toEqual(['one', 'two']);
    // A blocking reader and a writer per processor, both closed by stop().
    expect(connections.map((c) => c.role).sort()).toEqual(['reader', 'reader', 'writer', 'writer']);
    await running.stop(100);
    expect(connections.map((c) => c.redis.status)).toEqual(['end', 'end', 'end', 'end']);
  });
});

describe('the streams config section', () => {
  const entry = { name: 'scores', redis: 'redis://127.0.0.1:6379', input: 'events', group: 'g', output: 'scored', model: 'linear' };

  it('applies the defaults', () => {
    const parsed = parseStreamsSection({ streams: [entry] });
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.streams[0]).toEqual({
      ...entry,
      start_id: '$',
      dead_letter: 'events:dead',
      version: '',
      field: 'data',
      max_in_flight: 64,
      read_count: 32,
      block_ms: 1000,
      claim_idle_ms: 30000,
      claim_interval_ms: 5000,
      max_deliveries: 5,
    });
    expect(parseStreamsSection({})).toEqual({ ok: true, streams: [] });
  });

  it('names the key path of each problem', () => {
    const parsed = parseStreamsSection({
      streams: [
        { ...entry, redis: 'http://127.0.0.1:6379', max_inflight: 5 },
        { ...entry, output: 'events', max_in_flight: 0, start_id: 'latest' },
        { ...entry, model: undefined },
        { ...entry, input: 'other' },
      ],
    });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.problems).toEqual(
      expect.arrayContaining([
        "streams.0: unknown key 'max_inflight'",
        'streams.0.redis: must be a redis:// or rediss:// URL',
        "streams.1.output: must differ from input ('events')",
        expect.stringMatching(/^streams\.1\.max_in_flight: /),
        "streams.1.start_id: must be '$', '0' or a stream id such as 1700000000000-0",
        expect.stringMatching(/^streams\.2\.model: /),
        "streams.3.name: duplicate stream processor name 'scores' (first at streams.0)",
      ]),
    );
  });

  it('rejects a dead letter that is the input or the output', () => {
    const parsed = parseStreamsSection({ streams: [{ ...entry, dead_letter: 'scored' }] });
    expect(parsed).toEqual({ ok: false, problems: ["streams.0.dead_letter: must differ from output ('scored')"] });
  });
});
