/**
 * JSON parsing that keeps 64-bit integers exact.
 *
 * Triton reads INT64/UINT64 JSON numbers exactly, and JSON.parse cannot:
 * 9007199254740993 silently becomes 9007199254740992. Integer literals beyond
 * Number.MAX_SAFE_INTEGER therefore come back as bigints. A body with no
 * integer literal of 16+ digits cannot hold one, so almost every body takes the
 * native parser; only the rest pay for this one.
 *
 * With `nonFinite`, bare NaN / Infinity / -Infinity are read too: TF
 * Serving's JSON dialect (protocols/tfserving) shares this parser.
 */

/** Where an integer literal of 16+ digits may start (after `[`, `,`, `:` or whitespace); fractions and exponents never match. */
const LONG_INTEGER = /(?:^|[[,:\s])-?\d{16}/;
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
/** Deeper nesting is refused rather than risking the call stack. */
const MAX_DEPTH = 1000;

/** Where a bare NaN / Infinity / -Infinity may appear (a word that may also sit inside a string: then the slow path just finds none). */
const NON_FINITE_WORD = /NaN|Infinity/;
const NON_FINITE: readonly (readonly [string, number])[] = [
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['-Infinity', Number.NEGATIVE_INFINITY],
];

export interface JsonExactOptions {
  /**
   * Accept the bare words NaN, Infinity and -Infinity as numbers: the
   * non-strict JSON that TF Serving (rapidjson's kParseNanAndInfFlag) reads and
   * writes. Strict JSON (the default) refuses them, as JSON.parse does.
   */
  readonly nonFinite?: boolean;
}

/**
 * Parses `text`; throws SyntaxError on malformed JSON, like JSON.parse.
 * `exact` is false when the text cannot hold an integer beyond 2^53, so the
 * value holds no bigint and JSON.parse did the work.
 */
export function parseJsonExact(text: string, options: JsonExactOptions = {}): { readonly value: unknown; readonly exact: boolean } {
  const nonFinite = options.nonFinite === true;
  const long = LONG_INTEGER.test(text);
  if (!long && !(nonFinite && NON_FINITE_WORD.test(text))) return { value: JSON.parse(text), exact: false };
  const parser = new ExactParser(text, nonFinite);
  const value = parser.value(0);
  parser.end();
  return { value, exact: long };
}

class ExactParser {
  private pos = 0;

  constructor(
    private readonly text: string,
    private readonly nonFinite: boolean,
  ) {}

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) this.fail('JSON nested too deeply');
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (this.nonFinite) {
      for (const [word, v] of NON_FINITE) {
        if (this.text.startsWith(word, this.pos)) return (this.pos += word.length), v;
      }
    }
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    if (this.text.startsWith('true', this.pos)) return (this.pos += 4), true;
    if (this.text.startsWith('false', this.pos)) return (this.pos += 5), false;
    if (this.text.startsWith('null', this.pos)) return (this.pos += 4), null;
    return this.fail(c === undefined ? 'Unexpected end of JSON input' : `Unexpected token '${c}'`);
  }

  end(): void {
    this.skipSpace();
    if (this.pos !== this.text.length) this.fail('Unexpected non-whitespace character after JSON');
  }

  private object(depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === '}') return this.pos++, out;
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail('Expected a property name');
      const key = this.string();
      this.skipSpace();
      if (this.text[this.pos++] !== ':') this.fail("Expected ':' after a property name");
      // defineProperty, not assignment: a "__proto__" key stays plain data, as with JSON.parse.
      Object.defineProperty(out, key, { value: this.value(depth + 1), enumerable: true, writable: true, configurable: true });
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === '}') return out;
      if (c !== ',') this.fail("Expected ',' or '}'");
    }
  }

  private array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === ']') return this.pos++, out;
    for (;;) {
      out.push(this.value(depth + 1));
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === ']') return out;
      if (c !== ',') this.fail("Expected ',' or ']'");
    }
  }

  private string(): string {
    // JSON.parse validates escapes and control characters; this only finds the closing quote.
    const start = this.pos++;
    const text = this.text;
    while (this.pos < text.length && text[this.pos] !== '"') this.pos += text[this.pos] === '\\' ? 2 : 1;
    if (this.pos >= text.length) this.fail('Unterminated string');
    this.pos++;
    return JSON.parse(text.slice(start, this.pos)) as string;
  }

  private number(): number | bigint {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) return this.fail('Malformed number');
    this.pos += match[0].length;
    const n = Number(match[0]);
    const isInteger = match[1] === undefined && match[2] === undefined;
    return isInteger && !Number.isSafeInteger(n) ? BigInt(match[0]) : n;
  }

  private skipSpace(): void {
    const text = this.text;
    for (let c = text.charCodeAt(this.pos); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; ) {
      c = text.charCodeAt(++this.pos);
    }
  }

  private fail(message: string): never {
    throw new SyntaxError(`${message} at position ${this.pos}`);
  }
}
