/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4) for tests: it throws
 * on what a Prometheus server would reject or misread (a family's HELP or TYPE twice, a sample
 * before or without its family's TYPE, one series twice, a value that is not a number), and
 * returns the samples.
 */
export interface Exposition {
  /** Declared families: name -> type. */
  types: Map<string, string>;
  /** Samples by series exactly as written, e.g. `keywarden_published_keys{scope="a"}`. */
  samples: Map<string, number>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?$/;
const SUFFIXES = ['_bucket', '_sum', '_count'];

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string | undefined];
      if (kind === 'HELP') {
        if (helps.has(name)) throw new Error(`HELP of ${name} appears twice`);
        helps.add(name);
      } else {
        if (types.has(name)) throw new Error(`TYPE of ${name} appears twice`);
        types.set(name, rest ?? '');
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const [, name, labels = '', raw] = m as unknown as [string, string, string | undefined, string];
    const series = `${name}${labels}`;
    if (familyOf(series, types) === undefined) throw new Error(`sample of an undeclared family: ${line}`);
    if (samples.has(series)) throw new Error(`series appears twice: ${series}`);
    // Prometheus parses values with Go's ParseFloat: NaN and Inf in any case (prom-client writes `Nan`).
    const special = raw.toLowerCase();
    const value =
      special === 'nan'
        ? NaN
        : /^\+?inf$/.test(special)
          ? Infinity
          : special === '-inf'
            ? -Infinity
            : Number(raw);
    if (Number.isNaN(value) && special !== 'nan') throw new Error(`not a number: ${line}`);
    samples.set(series, value);
  }
  return { types, samples };
}

function familyOf(series: string, types: Map<string, string>): string | undefined {
  const name = series.replace(/\{.*$/, '');
  if (types.has(name)) return name;
  const suffix = SUFFIXES.find((s) => name.endsWith(s));
  const base = suffix ? name.slice(0, -suffix.length) : undefined;
  return base !== undefined && types.has(base) ? base : undefined;
}

/** The value of `name{scope="<scope>"}` (or of `name` without a scope), undefined when absent. */
export function sample(e: Exposition, name: string, scope?: string): number | undefined {
  return e.samples.get(scope === undefined ? name : `${name}{scope="${scope}"}`);
}
