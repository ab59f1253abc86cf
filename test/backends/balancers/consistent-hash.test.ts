import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConsistentHashBalancer, POINTS_PER_WEIGHT, type RingEndpoint } from '../../../src/backends/balancers/consistent-hash.js';
import { hash32 } from '../../../src/backends/balancers/hash.js';
import { LeastRequestBalancer } from '../../../src/backends/balancers/least-request.js';
import { all, seeded } from './random.js';

const ADDRESSES = ['10.0.0.1:8001', '10.0.0.2:8001', '10.0.0.3:8001', '10.0.0.4:8001', '10.0.0.5:8001'];
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

function ring(endpoints: readonly RingEndpoint[], outstanding = new Int32Array(endpoints.length)): ConsistentHashBalancer {
  return new ConsistentHashBalancer(endpoints, new LeastRequestBalancer(outstanding, seeded(9)));
}
const equal = (addresses: readonly string[]): RingEndpoint[] => addresses.map((address) => ({ address, weight: 1 }));

/** The address each key maps to. */
function assign(lb: ConsistentHashBalancer, endpoints: readonly RingEndpoint[], eligible: (i: number) => boolean = all): string[] {
  return KEYS.map((k) => endpoints[lb.pick(k, eligible)!]!.address);
}

describe('consistent_hash', () => {
  it('the hash is seedless: pinned values (changing them moves every key in every deployment)', () => {
    expect(hash32('')).toBe(2872998923);
    expect(hash32('a')).toBe(444641715);
    expect(hash32('user-1')).toBe(2005895916);
    expect(hash32('user-2')).toBe(853201105);
    expect(hash32('héllo')).toBe(1472820488);
    expect(hash32('🙂')).toBe(2208423841);
  });

  it('the same key maps to the same endpoint on separately built rings, whatever the config order', () => {
    const four = equal(ADDRESSES.slice(0, 4));
    const first = assign(ring(four), four);
    expect(assign(ring(four), four)).toEqual(first);
    const reversed = [...four].reverse();
    expect(assign(ring(reversed), reversed)).toEqual(first);
    // Every endpoint gets a fair share (100 points each: within ±40% of even).
    for (const a of four.map((e) => e.address)) {
      const share = first.filter((x) => x === a).length / KEYS.length;
      expect(share).toBeGreaterThan(0.15);
      expect(share).toBeLessThan(0.35);
    }
  });

  it('and in another process', async () => {
    const four = equal(ADDRESSES.slice(0, 4));
    const here = assign(ring(four), four).slice(0, 500);
    const script = `
      import { ConsistentHashBalancer } from './src/backends/balancers/consistent-hash.ts';
      import { LeastRequestBalancer } from './src/backends/balancers/least-request.ts';
      const eps = ${JSON.stringify(four)};
      const lb = new ConsistentHashBalancer(eps, new LeastRequestBalancer(new Int32Array(eps.length)));
      const out = [];
      for (let i = 0; i < 500; i++) out.push(eps[lb.pick('user-' + i, () => true)].address);
      console.log(JSON.stringify(out));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../../../', import.meta.url).pathname,
    });
    expect(JSON.parse(stdout)).toEqual(here);
  });

  it('adding a 5th endpoint moves about 1/5 of the keys, all of them to the new endpoint', () => {
    const four = equal(ADDRESSES.slice(0, 4));
    const five = equal(ADDRESSES);
    const before = assign(ring(four), four);
    const after = assign(ring(five), five);
    const moved = KEYS.filter((_, i) => before[i] !== after[i]);
    expect(moved.length / KEYS.length).toBeGreaterThan(0.12);
    expect(moved.length / KEYS.length).toBeLessThan(0.28);
    for (const k of moved) expect(after[KEYS.indexOf(k)]).toBe(ADDRESSES[4]);
  });

  it("an ineligible endpoint's keys move to the others; every other key stays", () => {
    const four = equal(ADDRESSES.slice(0, 4));
    const lb = ring(four);
    const before = assign(lb, four);
    const after = assign(lb, four, (i) => i !== 2);
    let movedAway = 0;
    KEYS.forEach((_, i) => {
      if (before[i] === ADDRESSES[2]) {
        expect(after[i]).not.toBe(ADDRESSES[2]);
        movedAway++;
      } else {
        expect(after[i]).toBe(before[i]);
      }
    });
    expect(movedAway).toBeGreaterThan(1000);
    // The moved keys spread over the remaining endpoints rather than all landing on one.
    const landed = new Set(KEYS.filter((_, i) => before[i] === ADDRESSES[2]).map((k) => after[KEYS.indexOf(k)]));
    expect(landed.size).toBe(3);
    // Eligible again: back where they were.
    expect(assign(lb, four)).toEqual(before);
  });

  it('weights scale an endpoint’s share of the ring', () => {
    const weighted: RingEndpoint[] = [{ address: ADDRESSES[0]!, weight: 3 }, { address: ADDRESSES[1]!, weight: 1 }];
    const lb = ring(weighted);
    expect(lb.size).toBe(4 * POINTS_PER_WEIGHT);
    const share = assign(lb, weighted).filter((a) => a === ADDRESSES[0]).length / KEYS.length;
    expect(share).toBeGreaterThan(0.65);
    expect(share).toBeLessThan(0.85);
    // Weights are reduced by their gcd: 300:100 is the same ring as 3:1.
    const big: RingEndpoint[] = [{ address: ADDRESSES[0]!, weight: 300 }, { address: ADDRESSES[1]!, weight: 100 }];
    expect(ring(big).size).toBe(lb.size);
  });

  it('a request without a key goes to least_request; no eligible endpoint gives undefined', () => {
    const four = equal(ADDRESSES.slice(0, 4));
    const outstanding = Int32Array.from([5, 5, 0, 5]);
    const lb = ring(four, outstanding);
    const picks = new Set(Array.from({ length: 200 }, () => lb.pick(undefined, all)));
    expect(picks.has(2)).toBe(true);
    expect(lb.pick('', all)).toBeDefined(); // an empty header value is no key either
    expect(lb.pick('user-1', () => false)).toBeUndefined();
    expect(lb.pick(undefined, () => false)).toBeUndefined();
  });
});
