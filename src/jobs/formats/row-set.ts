/**
 * A set of row numbers: a growable bitset, so memory is (largest row)/8 bytes
 * and a million rows cost 125 kB.
 */
export class RowSet {
  #words: Uint32Array;
  #size = 0;

  constructor(initialRows = 1024) {
    this.#words = new Uint32Array(Math.max(1, Math.ceil(initialRows / 32)));
  }

  /** Rows in the set. */
  get size(): number {
    return this.#size;
  }

  /** Adds a row (a non-negative safe integer; anything else is a RangeError). */
  add(row: number): void {
    if (!Number.isSafeInteger(row) || row < 0) throw new RangeError(`a row number must be a non-negative integer, got ${row}`);
    const word = Math.floor(row / 32);
    if (word >= this.#words.length) this.#grow(word + 1);
    const bit = 1 << (row % 32);
    const words = this.#words;
    if ((words[word]! & bit) === 0) {
      words[word] = words[word]! | bit;
      this.#size++;
    }
  }

  has(row: number): boolean {
    if (!Number.isSafeInteger(row) || row < 0) return false;
    const word = Math.floor(row / 32);
    if (word >= this.#words.length) return false;
    return (this.#words[word]! & (1 << (row % 32))) !== 0;
  }

  /** Whether every row in [start, end) is in the set. */
  hasAll(start: number, end: number): boolean {
    for (let row = start; row < end; row++) if (!this.has(row)) return false;
    return true;
  }

  #grow(minWords: number): void {
    const next = new Uint32Array(Math.max(minWords, this.#words.length * 2));
    next.set(this.#words);
    this.#words = next;
  }
}
