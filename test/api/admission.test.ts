import { describe, expect, it } from 'vitest';
import { RequestAdmission } from '../../src/api/admission.js';
import { GatewayError } from '../../src/core/errors.js';
import { startStack } from '../helpers/stack.js';

describe('RequestAdmission', () => {
  it('admits up to the limit, then refuses with UNAVAILABLE and a retry hint; ending a ticket frees its place', () => {
    const admission = new RequestAdmission(2);
    const a = admission.admit();
    admission.admit();
    let refused: unknown;
    try {
      admission.admit();
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(GatewayError);
    expect((refused as GatewayError).code).toBe('UNAVAILABLE');
    expect((refused as GatewayError).retryAfterMs).toBe(1_000);
    a.end();
    a.end(); // twice is harmless
    expect(admission.inFlight).toBe(1);
    expect(() => admission.admit()).not.toThrow();
  });

  it('idle() resolves when the last request ends, or false at its timeout; abortAll() aborts with the reason', async () => {
    const admission = new RequestAdmission(10);
    expect(await admission.idle(10)).toBe(true);
    const t = admission.admit();
    expect(await admission.idle(20)).toBe(false);
    const idle = admission.idle(5_000);
    const reason = new GatewayError('UNAVAILABLE', 'shutting down');
    admission.abortAll(reason);
    expect(t.signal.aborted).toBe(true);
    expect(t.signal.reason).toBe(reason);
    t.end();
    expect(await idle).toBe(true);
  });

  it('a ticket that has ended is not aborted any more', () => {
    const admission = new RequestAdmission(10);
    const t = admission.admit();
    t.end();
    t.cancel();
    expect(t.signal.aborted).toBe(false);
  });
});

describe("a ticket's signal (a CancelSignal without an AbortController)", () => {
  it('runs each listener once, in order, when aborted; removed ones and ones added after never run', () => {
    const t = new RequestAdmission(10).admit();
    const heard: string[] = [];
    const a = () => heard.push(`a:${(t.signal.reason as GatewayError).code}`);
    const b = () => heard.push('b');
    const c = () => heard.push('c');
    t.signal.addEventListener('abort', a, { once: true });
    t.signal.addEventListener('abort', b);
    t.signal.addEventListener('abort', c);
    t.signal.removeEventListener('abort', b);
    t.signal.removeEventListener('abort', () => heard.push('never added'));
    expect(t.signal.aborted).toBe(false);
    expect(t.signal.reason).toBeUndefined();
    t.cancel();
    t.abort(new GatewayError('UNAVAILABLE', 'later reasons do not replace the first'));
    t.signal.addEventListener('abort', () => heard.push('too late'));
    expect(heard).toEqual(['a:CANCELLED', 'c']);
    expect(t.signal.aborted).toBe(true);
    expect((t.signal.reason as GatewayError).message).toMatch(/closed the connection/);
  });
});

describe('the REST timeout header', () => {
  it('x-infergate-timeout-ms must be a whole number of milliseconds: anything else is a 400 naming the header', async () => {
    const stack = await startStack();
    try {
      const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
      for (const bad of ['0', '-5', 'soon', '1.5', '99999999999']) {
        const res = await stack.http.request({
          path: '/v2/models/linear/infer',
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-infergate-timeout-ms': bad },
          body,
        });
        const text = await res.body.text();
        expect(res.statusCode, bad).toBe(400);
        expect(JSON.parse(text).error, bad).toContain('x-infergate-timeout-ms');
      }
      const ok = await stack.http.request({
        path: '/v2/models/linear/infer',
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-infergate-timeout-ms': '2000' },
        body,
      });
      await ok.body.dump();
      expect(ok.statusCode).toBe(200);
    } finally {
      await stack.close();
    }
  });
});
