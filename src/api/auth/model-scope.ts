/**
 * The models a principal may call, compiled once from its patterns: '*'
 * (every model), exact public names (a Set), and prefixes ending in '*'
 * ('rank*': a short list, tested with startsWith). No regex at request time.
 */
export class ModelScope {
  static readonly NONE = new ModelScope(false, new Set(), [], []);
  static readonly ALL = new ModelScope(true, new Set(), [], ['*']);

  private constructor(
    /** Every model ('*'). */
    readonly all: boolean,
    private readonly exact: ReadonlySet<string>,
    private readonly prefixes: readonly string[],
    /** The patterns as written, for messages and views. */
    readonly patterns: readonly string[],
  ) {}

  /**
   * From patterns as the config validates them. A pattern with a '*' anywhere
   * but at its end matches nothing (JWT scopes are not validated by the
   * config), nor does an empty one.
   */
  static compile(patterns: readonly string[]): ModelScope {
    if (patterns.length === 0) return ModelScope.NONE;
    if (patterns.includes('*')) return ModelScope.ALL;
    const exact = new Set<string>();
    const prefixes: string[] = [];
    for (const p of patterns) {
      const star = p.indexOf('*');
      if (star === -1) {
        if (p !== '') exact.add(p);
      } else if (star === p.length - 1) {
        prefixes.push(p.slice(0, -1));
      }
    }
    return new ModelScope(false, exact, prefixes, [...patterns]);
  }

  allows(model: string): boolean {
    if (this.all || this.exact.has(model)) return true;
    for (const prefix of this.prefixes) if (model.startsWith(prefix)) return true;
    return false;
  }

  get empty(): boolean {
    return !this.all && this.exact.size === 0 && this.prefixes.length === 0;
  }
}
