import { describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { BackendCluster } from '../../src/backends/cluster.js';
import { validateConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/core/errors.js';
import { ModelRouter } from '../../src/routing/model-router.js';
import { withDefaultResilience } from '../../src/resilience/resilient-backend.js';
import { silentLogger as quietLog } from '../../src/observability/logger.js';

const config = validateConfig({
  backends: { t: { kind: 'triton', protocol: 'grpc', endpoints: ['127.0.0.1:1'] } },
  models: { linear: { backend: 't' }, old: { backend: 't', model: 'linear', version: '1' } },
});
const cluster = new BackendCluster('t', 'triton', 'grpc', 1000, [{} as Backend]);
const router = new ModelRouter(config, withDefaultResilience(new Map([['t', cluster]]), quietLog));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as GatewayError).code;
  }
  return 'OK';
}

describe('ModelRouter', () => {
  it('maps a public name to its backend model, passing the client version through', () => {
    const t = router.resolve('linear', '');
    expect(t.route.backend.cluster).toBe(cluster);
    expect(t.route.backendModel).toBe('linear');
    expect(t.backendVersion).toBe('');
    expect(router.resolve('linear', '3').backendVersion).toBe('3');
  });

  it('a pinned version is used when none is asked, and is the only one allowed', () => {
    expect(router.resolve('old', '').backendVersion).toBe('1');
    expect(router.resolve('old', '1').route.backendModel).toBe('linear');
    expect(codeOf(() => router.resolve('old', '2'))).toBe('NOT_FOUND');
  });

  it('unknown names are NOT_FOUND; malformed names and versions INVALID_ARGUMENT', () => {
    expect(codeOf(() => router.resolve('nope', ''))).toBe('NOT_FOUND');
    for (const bad of ['a/b', '..', 'a..b', 'x\u0000', ' sp', '']) expect(codeOf(() => router.resolve(bad, ''))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => router.resolve('linear', '1/../2'))).toBe('INVALID_ARGUMENT');
  });
});
