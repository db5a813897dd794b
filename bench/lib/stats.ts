/** The median of a non-empty list (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The p-th percentile (0..100) by nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank]!;
}

/** a / b to two decimals, as text. */
export function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(2) : 'n/a';
}

/** A rate for people: 12,345/s. */
export function rate(n: number): string {
  return `${Math.round(n).toLocaleString('en-US')}/s`;
}

/** Milliseconds for people. */
export function ms(n: number): string {
  return n < 10 ? `${n.toFixed(2)} ms` : `${n.toFixed(1)} ms`;
}

/**
 * a ÷ b paired by round (a[i] and b[i] were measured in the same round, so a change in the
 * machine's speed between rounds hits both): the median of the per-round ratios and their
 * range, as "0.88 (0.67–1.25)". The machine drifts ±30% between rounds; the ratio of two
 * medians taken over different rounds would carry that drift.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): string {
  const r = a.map((x, i) => x / (b[i] ?? Number.NaN)).filter((x) => Number.isFinite(x));
  if (r.length === 0) return 'n/a';
  const s = [...r].sort((x, y) => x - y);
  return `${median(r).toFixed(2)} (${s[0]!.toFixed(2)}–${s[s.length - 1]!.toFixed(2)})`;
}

/** CPU µs per response as ms per 1,000 responses: a cost that does not depend on how busy the machine is. */
export function cpuPerThousand(usPerResponse: number): string {
  return Number.isFinite(usPerResponse) ? `${usPerResponse.toFixed(0)} ms` : 'n/a';
}
