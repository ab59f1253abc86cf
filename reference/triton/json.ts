// JSON that keeps 64-bit integers exact. Triton reads and writes INT64/UINT64 JSON numbers exactly, and a
// double cannot (2^53 + 1 would silently become 2^53), so the oracle must not either.

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

const LONG_DIGITS = /\d{16}/;
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/**
 * Parses JSON; integer literals beyond Number.MAX_SAFE_INTEGER become bigints. Bodies with no run of 16+ digits
 * cannot hold such a literal and take the native parser.
 */
export function parseJson(text: string): JsonValue {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text) as JsonValue;
  const parser = new Parser(text);
  const value = parser.value();
  parser.end();
  return value;
}

class Parser {
  private pos = 0;
  constructor(private readonly text: string) {}

  value(): JsonValue {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    for (const [word, val] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return val;
      }
    }
    return this.fail('unexpected token');
  }

  end(): void {
    this.skipSpace();
    if (this.pos !== this.text.length) this.fail('unexpected data after JSON value');
  }

  private object(): JsonValue {
    const out: { [key: string]: JsonValue } = {};
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === '}') return this.pos++, out;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail('expected a property name');
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos++] !== ':') this.fail("expected ':'");
      // defineProperty, not assignment, so a "__proto__" key stays plain data as it does with JSON.parse.
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') this.fail("expected ',' or '}'");
    }
  }

  private array(): JsonValue {
    const out: JsonValue[] = [];
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === ']') return this.pos++, out;
    for (;;) {
      out.push(this.value());
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') this.fail("expected ',' or ']'");
    }
  }

  private string(): string {
    // Strings are rare in the slow path and JSON.parse validates escapes, so delegate after finding the end.
    const start = this.pos++;
    while (this.pos < this.text.length && this.text[this.pos] !== '"') {
      this.pos += this.text[this.pos] === '\\' ? 2 : 1;
    }
    if (this.pos >= this.text.length) this.fail('unterminated string');
    this.pos++;
    return JSON.parse(this.text.slice(start, this.pos)) as string;
  }

  private number(): number | bigint {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (!match) return this.fail('malformed number');
    this.pos += match[0].length;
    const isInteger = match[1] === undefined && match[2] === undefined;
    const n = Number(match[0]);
    return isInteger && !Number.isSafeInteger(n) ? BigInt(match[0]) : n;
  }

  private skipSpace(): void {
    for (let c = this.text.charCodeAt(this.pos); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; ) {
      c = this.text.charCodeAt(++this.pos);
    }
  }

  private fail(message: string): never {
    throw new SyntaxError(`${message} at position ${this.pos}`);
  }
}

/** JSON.stringify that writes bigints as exact integer literals; non-finite numbers become null. */
export function stringifyJson(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const fields = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}:${stringifyJson(v)}`);
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
