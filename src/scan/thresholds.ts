/**
 * Thresholds that make a W-byte window "look uniformly random", chosen from exact tail
 * probabilities so that a truly random key fails each test with probability <= 1e-6.
 */

const MISS = 1e-6;

/** Thresholds for a window size; exact tail probabilities, computed once per size. */
export interface WindowRule {
  size: number;
  minDistinct: number;
  minHigh: number;
  maxZeros: number;
}

const rules = new Map<number, WindowRule>();

/** The thresholds for windows of `size` bytes (see the module comment). */
export function ruleFor(size: number): WindowRule {
  let rule = rules.get(size);
  if (rule === undefined) {
    rule = {
      size,
      minDistinct: distinctThreshold(size),
      minHigh: lowerTail(size, 0.5),
      maxZeros: upperTail(size, 1 / 256),
    };
    rules.set(size, rule);
  }
  return rule;
}

/** Largest T with P(distinct values among `n` uniform bytes < T) <= MISS (occupancy DP). */
function distinctThreshold(n: number): number {
  let p = new Float64Array(n + 2);
  p[0] = 1;
  for (let i = 0; i < n; i++) {
    const q = new Float64Array(n + 2);
    for (let k = 0; k <= i; k++) {
      q[k]! += (p[k]! * k) / 256;
      q[k + 1]! += (p[k]! * (256 - k)) / 256;
    }
    p = q;
  }
  let cum = 0;
  for (let k = 0; k <= n; k++) {
    if (cum + p[k]! > MISS) return k;
    cum += p[k]!;
  }
  return n;
}

function binomial(n: number, prob: number): number[] {
  const out: number[] = [];
  let c = Math.pow(1 - prob, n);
  for (let k = 0; k <= n; k++) {
    out.push(c);
    c = (c * (n - k) * prob) / ((k + 1) * (1 - prob));
  }
  return out;
}

/** Largest h with P(X < h) <= MISS for X ~ Binomial(n, prob). */
function lowerTail(n: number, prob: number): number {
  const pmf = binomial(n, prob);
  let cum = 0;
  for (let k = 0; k <= n; k++) {
    if (cum + pmf[k]! > MISS) return k;
    cum += pmf[k]!;
  }
  return n;
}

/** Smallest z with P(X > z) <= MISS for X ~ Binomial(n, prob). */
function upperTail(n: number, prob: number): number {
  const pmf = binomial(n, prob);
  let cum = 0;
  for (let k = n; k >= 0; k--) {
    if (cum + pmf[k]! > MISS) return k;
    cum += pmf[k]!;
  }
  return 0;
}
