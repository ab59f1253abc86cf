// JSON that keeps 64-bit integers exact, shared by the Triton and TF Serving references. Both servers read and
// write INT64/UINT64 JSON numbers exactly, and a double cannot (2^53 + 1 would silently become 2^53), so the
// oracles must not either. The two differ only in dialect (bare NaN/Infinity, error wording, sign of zero),
// so that is passed in and stays in each server's own json.ts.

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What a server's JSON accepts and how its syntax errors read. */
export interface JsonDialect {
  /** Read bare NaN, Infinity and -Infinity as numbers (TF Serving does; strict JSON does not). */
  nonFinite: boolean;
  /** The message for each kind of syntax error the slow-path parser finds. */
  messages: Readonly<Record<JsonErrorKind, string>>;
  /** Turns a message and its offset into the error text. */
  format(message: string, pos: number): string;
  /**
   * Rewrites a native JSON.parse error from the fast path; without it that error is thrown unchanged.
   * A server that wraps these also reports an invalid string escape as messages.invalidString.
   */
  native?(message: string): string;
}

export type JsonErrorKind =
  | 'unexpectedToken' | 'trailingData' | 'missingName' | 'missingColon' | 'objectSeparator'
  | 'arraySeparator' | 'unterminatedString' | 'invalidString' | 'malformedNumber';

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const STRICT_WORDS: readonly (readonly [string, JsonValue])[] = [['true', true], ['false', false], ['null', null]];
// '-Infinity' is matched here before number() sees its '-'; with STRICT_WORDS the order does not matter, as no
// word starts with '-' or a digit.
const NON_FINITE_WORDS: readonly (readonly [string, JsonValue])[] = [
  ...STRICT_WORDS, ['NaN', Number.NaN], ['Infinity', Infinity], ['-Infinity', -Infinity],
];

/**
 * Parses JSON in the given dialect; integer literals beyond Number.MAX_SAFE_INTEGER become bigints. Text with
 * no run of 16 digits (nor, when non-finite words are allowed, a NaN/Infinity word) cannot hold anything
 * JSON.parse gets wrong and takes the native parser.
 */
export function parseJson(text: string, dialect: JsonDialect): JsonValue {
  const slowPath = dialect.nonFinite ? /\d{16}|NaN|Infinity/ : /\d{16}/;
  if (!slowPath.test(text)) {
    if (!dialect.native) return JSON.parse(text) as JsonValue;
    try {
      return JSON.parse(text) as JsonValue;
    } catch (err) {
      throw new SyntaxError(dialect.native((err as Error).message));
    }
  }
  const parser = new Parser(text, dialect);
  const value = parser.value();
  parser.end();
  return value;
}

class Parser {
  private pos = 0;
  private readonly words: readonly (readonly [string, JsonValue])[];
  constructor(private readonly text: string, private readonly dialect: JsonDialect) {
    this.words = dialect.nonFinite ? NON_FINITE_WORDS : STRICT_WORDS;
  }

  value(): JsonValue {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string();
    for (const [word, val] of this.words) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return val;
      }
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    return this.fail('unexpectedToken');
  }

  end(): void {
    this.skipSpace();
    if (this.pos !== this.text.length) this.fail('trailingData');
  }

  private object(): JsonValue {
    const out: { [key: string]: JsonValue } = {};
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === '}') return this.pos++, out;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail('missingName');
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos++] !== ':') this.fail('missingColon');
      // defineProperty, not assignment, so a "__proto__" key stays plain data as it does with JSON.parse.
      Object.defineProperty(out, key, { value: this.value(), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') this.fail('objectSeparator');
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
      if (c !== ',') this.fail('arraySeparator');
    }
  }

  private string(): string {
    // Strings are rare in the slow path and JSON.parse validates escapes, so delegate after finding the end.
    const start = this.pos++;
    while (this.pos < this.text.length && this.text[this.pos] !== '"') this.pos += this.text[this.pos] === '\\' ? 2 : 1;
    if (this.pos >= this.text.length) this.fail('unterminatedString');
    this.pos++;
    if (!this.dialect.native) return JSON.parse(this.text.slice(start, this.pos)) as string;
    try {
      return JSON.parse(this.text.slice(start, this.pos)) as string;
    } catch {
      return this.fail('invalidString');
    }
  }

  private number(): number | bigint {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (!match) return this.fail('malformedNumber');
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

  private fail(kind: JsonErrorKind): never {
    throw new SyntaxError(this.dialect.format(this.dialect.messages[kind], this.pos));
  }
}

export interface StringifyOptions {
  /** Spaces per level for objects; 0 (the default) writes everything on one line. */
  indent?: number;
  /** Keep arrays on one line even when indenting (rapidjson's kFormatSingleLineArray, used for predictions). */
  singleLineArrays?: boolean;
  /** Write non-finite numbers as bare NaN/Infinity/-Infinity; otherwise they become null, as in JSON.stringify. */
  nonFinite?: boolean;
  /** Write -0 as "-0"; otherwise it becomes "0", as in JSON.stringify. */
  signedZero?: boolean;
}

/** JSON.stringify that writes bigints as exact integer literals and leaves out undefined object members. */
export function stringifyJson(value: unknown, options: StringifyOptions = {}): string {
  const indent = options.indent ?? 0;
  const write = (v: unknown, depth: number): string => {
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return !options.nonFinite ? 'null' : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
      return options.signedZero && Object.is(v, -0) ? '-0' : JSON.stringify(v);
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
