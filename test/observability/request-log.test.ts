import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/core/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { logRequestFailure } from '../../src/observability/request-log.js';

function capture(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('logRequestFailure', () => {
  it('logs client mistakes at warn, with the code and status, without a stack', () => {
    const { lines, stream } = capture();
    logRequestFailure(createLogger('info', stream), { requestId: 'r1' }, new GatewayError('INVALID_ARGUMENT', 'bad shape'));
    expect(lines).toEqual([expect.objectContaining({ level: 'warn', requestId: 'r1', code: 'INVALID_ARGUMENT', status: 400, msg: 'bad shape' })]);
    expect(lines[0]).not.toHaveProperty('err');
  });

  it('logs an unreachable backend at error without a stack, and internal errors with their cause', () => {
    const { lines, stream } = capture();
    const log = createLogger('info', stream);
    logRequestFailure(log, {}, new GatewayError('UNAVAILABLE', 'backend down', { cause: new Error('ECONNREFUSED') }));
    logRequestFailure(log, {}, new GatewayError('INTERNAL', 'oops', { cause: new TypeError('x is undefined') }));
    expect(lines[0]).toMatchObject({ level: 'error', code: 'UNAVAILABLE', status: 503 });
    expect(lines[0]).not.toHaveProperty('err');
    expect(lines[1]).toMatchObject({ level: 'error', code: 'INTERNAL', err: { type: 'TypeError', message: 'x is undefined' } });
  });
});
