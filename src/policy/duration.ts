/**
 * Durations in config are strings like `90s`, `15m`, `12h`, `30d`, `1h30m`. The grammar is
 * deliberately small: no months or years (their length varies), no bare numbers (is `60`
 * seconds or minutes?), no fractions.
 */
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const DURATION_RE = /^(?:\d+[smhdw])+$/;
const PART_RE = /(\d+)([smhdw])/g;

/** Parses a duration string into whole seconds; returns undefined when it is not one. */
export function parseDurationSeconds(text: string): number | undefined {
  if (typeof text !== 'string' || !DURATION_RE.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(PART_RE)) total += Number(m[1]) * UNIT_SECONDS[m[2] as string]!;
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Formats seconds in the largest units that divide it, e.g. 5400 -> `1h30m`. */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  const sign = seconds < 0 ? '-' : '';
  let rest = Math.abs(Math.round(seconds));
  let out = '';
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return sign + out;
}
