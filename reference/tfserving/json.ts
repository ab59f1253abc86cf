// TF Serving's JSON dialect. It is not strict JSON: bare NaN, Infinity and -Infinity are read and written
// (rapidjson's kParseNanAndInfFlag / kWriteNanAndInfFlag), and 64-bit integers must round-trip exactly, which
// JSON.parse and a double cannot do (2^53 + 1 would silently become 2^53).

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

const SLOW_PATH = /\d{16}|NaN|Infinity/;
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const WORDS: readonly (readonly [string, JsonValue])[] = [
  ['true', true], ['false', false], ['null', null], ['NaN', Number.NaN], ['Infinity', Infinity], ['-Infinity', -Infinity],
];

/**
 * Parses TF Serving's JSON; integer literals beyond Number.MAX_SAFE_INTEGER become bigints. Text without a run of
 * 16 digits or a NaN/Infinity word takes the native parser. Errors read like TF's:
 * "JSON Parse error: <what> at offset: <n>".
 */
export function parseJson(text: string): JsonValue {
  if (!SLOW_PATH.test(text)) {
    try {
      return JSON.parse(text) as JsonValue;
    } catch (err) {
      throw new SyntaxError(`JSON Parse error: ${(err as Error).message}`);
    }
  }
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
    for (const [word, val] of WORDS) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return val;
      }
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    return this.fail('Invalid value.');
  }

  end(): void {
    this.skipSpace();
    if (this.pos !== this.text.length) this.fail('The document root must not be followed by other values.');
  }

  private object(): JsonValue {
    const out: { [key: string]: JsonValue } = {};
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === '}') return this.pos++, out;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail('Missing a name for object member.');
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos++] !== ':') this.fail('Missing a colon after a name of object member.');
      // defineProperty, not assignment, so a "__proto__" key stays plain data as it does with JSON.parse.
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') this.fail('Missing a comma or \'}\' after an object member.');
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
      if (c !== ',') this.fail('Missing a comma or \']\' after an array element.');
    }
  }

  private string(): string {
    // JSON.parse validates the escapes; we only find where the string ends.
    const start = this.pos++;
    while (this.pos < this.text.length && this.text[this.pos] !== '"') this.pos += this.text[this.pos] === '\\' ? 2 : 1;
    if (this.pos >= this.text.length) this.fail('Missing a closing quotation mark in string.');
    this.pos++;
    try {
      return JSON.parse(this.text.slice(start, this.pos)) as string;
    } catch {
      return this.fail('Invalid string.');
    }
  }

  private number(): number | bigint {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (!match) return this.fail('Invalid value.');
    this.pos += match[0].length;
    const n = Number(match[0]);
    const isInteger = match[1] === undefined && match[2] === undefined;
    return isInteger && !Number.isSafeInteger(n) ? BigInt(match[0]) : n;
  }

  private skipSpace(): void {
    for (let c = this.text.charCodeAt(this.pos); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;) {
      c = this.text.charCodeAt(++this.pos);
    }
  }

  private fail(message: string): never {
    throw new SyntaxError(`JSON Parse error: ${message} at offset: ${this.pos}`);
  }
}

export interface StringifyOptions {
  /** Spaces per level for objects; 0 writes everything on one line. */
  indent?: number;
  /** Keep arrays on one line even when indenting (rapidjson's kFormatSingleLineArray, used for predictions). */
  singleLineArrays?: boolean;
}

/**
 * Writes TF Serving's JSON: bigints as exact integer literals, non-finite numbers as bare NaN/Infinity/-Infinity,
 * undefined object members left out.
 */
export function stringifyJson(value: unknown, options: StringifyOptions = {}): string {
  const indent = options.indent ?? 0;
  const write = (v: unknown, depth: number): string => {
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number') {
      if (Number.isFinite(v)) return Object.is(v, -0) ? '-0' : JSON.stringify(v); // keep the sign of zero, as TF does
      return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
    }
    const pad = indent > 0 ? `\n${' '.repeat(indent * (depth + 1))}` : '';
    const close = indent > 0 ? `\n${' '.repeat(indent * depth)}` : '';
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      if (indent === 0 || options.singleLineArrays) return `[${v.map((x) => write(x, depth)).join(options.singleLineArrays && indent > 0 ? ', ' : ',')}]`;
      return `[${v.map((x) => pad + write(x, depth + 1)).join(',')}${close}]`;
    }
    if (v !== null && typeof v === 'object') {
      const fields = Object.entries(v).filter(([, x]) => x !== undefined);
      if (fields.length === 0) return '{}';
      const colon = indent > 0 ? ': ' : ':';
      return `{${fields.map(([k, x]) => `${pad}${JSON.stringify(k)}${colon}${write(x, depth + 1)}`).join(',')}${close}}`;
    }
    return JSON.stringify(v) ?? 'null';
  };
  return write(value, 0);
}
