/**
 * A fast, seedless 32-bit string hash: FNV-1a over the string's UTF-16 code
 * units, then murmur3's fmix32 finalizer (FNV-1a alone spreads similar keys
 * such as "user-1", "user-2" poorly over the ring).
 *
 * It has no seed and reads no process state, so a key hashes to the same value
 * in every process and after every restart: several gateway instances send a
 * key to the same endpoint. Changing this function moves keys; treat it as a
 * wire format (test/backends/balancers pins known values).
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
