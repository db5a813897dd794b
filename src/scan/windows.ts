/**
 * Cheap selection of byte windows that could hold raw key material, so that the expensive
 * confirmation (a public-key computation, or a BigInt division for RSA primes) runs on few
 * of them. See docs/scan.md for the measurements behind each rule.
 *
 * A window of W bytes is a candidate when
 * 1. it looks uniformly random (thresholds.ts): enough distinct byte values, enough bytes
 *    >= 0x80, few 0x00 and few 0xff, at most one pair of adjacent zero bytes. This rejects
 *    text, zero fill, and runs of pointers and small integers (their zero high bytes);
 * 2. and it sits at an edge of random-looking data: the 8 bytes right before it or right after
 *    it do not look random (see `markRandom8`). A key in memory lives in its own allocation or
 *    field, bordered by allocator headers, pointers, lengths or zero padding; inside a long
 *    run of random bytes (compressed or encrypted data) only its ends are tried. This rule is
 *    what makes every offset affordable, and it is the main limit: a raw key buried in the
 *    middle of other random bytes is not found raw.
 *
 * Work is staged so that per-byte loops only run where they can matter: zero pages are
 * skipped by memcmp, then per-8-byte-word counts of zero and high bytes rule out text and
 * pointer-heavy memory, and only what is left gets the sliding per-byte histograms.
 */
import type { WindowRule } from './thresholds';

/** A half-open byte range [start, end) of a buffer. */
export type Range = [number, number];

const BLOCK = 4096;

/** Maximal runs of 4 KiB blocks that are not all zero (core dumps are mostly zero pages). */
export function nonZeroSpans(buf: Buffer): Range[] {
  const zero = Buffer.alloc(BLOCK);
  const spans: Range[] = [];
  for (let a = 0; a < buf.length; a += BLOCK) {
    const e = Math.min(buf.length, a + BLOCK);
    if (buf.compare(zero, 0, e - a, a, e) === 0) continue;
    const last = spans[spans.length - 1];
    if (last !== undefined && last[1] === a) last[1] = e;
    else spans.push([a, e]);
  }
  return spans;
}

/** Per 8-byte word of a buffer (word k = bytes 8k..8k+7): how many bytes are 0x00 / >= 0x80. */
export interface WordCounts {
  zeros: Uint8Array;
  highs: Uint8Array;
}

/** Counts zero and high bytes per word inside `spans`; words outside count as all-zero. */
export function countWords(buf: Buffer, spans: Range[]): WordCounts {
  const words = Math.ceil(buf.length / 8);
  const zeros = new Uint8Array(words).fill(8);
  const highs = new Uint8Array(words);
  for (const [a, b] of spans) {
    for (let k = a >> 3; k < Math.ceil(b / 8); k++) {
      let z = 0;
      let h = 0;
      const end = Math.min(buf.length, 8 * k + 8);
      for (let i = 8 * k; i < end; i++) {
        const x = buf[i]!;
        if (x === 0) z++;
        h += x >> 7;
      }
      zeros[k] = z + (8 * k + 8 - end);
      highs[k] = h;
    }
  }
  return { zeros, highs };
}

/**
 * Ranges of window starts [first, end) where a window of `rule.size` bytes might pass the
 * randomness test, judged from word counts alone: a window starting in word k contains words
 * k+1 .. k+n-1 whole (n = floor(size / 8)) and touches no word outside k .. k+ceil(size / 8).
 * A necessary condition, never a guess: it only removes starts whose window certainly fails.
 */
export function stretches(buf: Buffer, counts: WordCounts, rule: WindowRule, spans: Range[]): Range[] {
  const n = Math.floor(rule.size / 8); // words k+1 .. k+n-1 lie inside every window from word k
  const m = Math.ceil(rule.size / 8); // words k .. k+m are all a window from word k can touch
  const { zeros, highs } = counts;
  const words = zeros.length;
  const lastStart = buf.length - rule.size;
  const out: Range[] = [];
  let done = 0; // words before this were already looked at (spans are sorted)
  for (const [a, b] of spans) {
    // Windows that touch the span start up to `size` bytes before it; words outside spans are zero.
    const from = Math.max(done, Math.floor(Math.max(0, a - rule.size) / 8));
    const to = Math.min(words, Math.ceil(b / 8));
    if (from >= to) continue;
    let fullZeros = 0; // zeros in words k+1 .. k+n-1
    let touchedHighs = 0; // highs in words k .. k+m
    for (let j = from + 1; j < from + n && j < words; j++) fullZeros += zeros[j]!;
    for (let j = from; j <= from + m && j < words; j++) touchedHighs += highs[j]!;
    for (let k = from; k < to && 8 * k <= lastStart; k++) {
      if (fullZeros <= rule.maxZeros && touchedHighs >= rule.minHigh) {
        const first = 8 * k;
        const end = Math.min(lastStart + 1, first + 8);
        const last = out[out.length - 1];
        if (last !== undefined && last[1] === first) last[1] = end;
        else out.push([first, end]);
      }
      fullZeros += (zeros[k + n] ?? 0) - (zeros[k + 1] ?? 0);
      touchedHighs += (highs[k + m + 1] ?? 0) - (highs[k] ?? 0);
    }
    done = to;
  }
  return out;
}

/** 1 for bytes of plain text: printable ASCII, tab, LF, CR. */
const TEXT = new Uint8Array(256).map((_, b) =>
  (b >= 0x20 && b <= 0x7e) || b === 9 || b === 10 || b === 13 ? 1 : 0,
);

/**
 * Sets out[p] = 1 where buf[p..p+8) looks random: >= 6 distinct values, not all plain text,
 * and not shaped like a 64-bit pointer or small integer (two zero bytes at either end). A
 * random block fails this with probability ~5e-4, which keeps candidates inside long random
 * runs rare. Counting any two zero bytes as non-random would also catch pieces of pointers
 * at odd offsets, but measured 2.5x more candidates on a real core: memory is aligned, and a
 * key next to a pointer lies next to all of it. Positions not computed stay 0 ("not random"),
 * which can only add candidates.
 */
export function markRandom8(buf: Buffer, ranges: Range[], out: Uint8Array): void {
  out.fill(0, 0, buf.length);
  const cnt = new Uint16Array(256);
  for (const [a0, b] of ranges) {
    const a = Math.max(0, a0);
    const end = Math.min(buf.length, b + 8);
    if (end - a < 8) continue;
    cnt.fill(0);
    let distinct = 0;
    let text = 0;
    for (let i = a; i < a + 8; i++) {
      if (inc(cnt, buf[i]!)) distinct++;
      text += TEXT[buf[i]!]!;
    }
    for (let p = a; ; p++) {
      const pointerLike = (buf[p] === 0 && buf[p + 1] === 0) || (buf[p + 6] === 0 && buf[p + 7] === 0);
      if (distinct >= 6 && text < 8 && !pointerLike) out[p] = 1;
      if (p + 8 >= end) break;
      const gone = buf[p]!;
      const come = buf[p + 8]!;
      if (dec(cnt, gone)) distinct--;
      if (inc(cnt, come)) distinct++;
      text += TEXT[come]! - TEXT[gone]!;
    }
  }
}

/**
 * Two adjacent zero bytes occur in a random 32-byte key with probability ~5e-4, two such
 * pairs with ~2e-6; two pointers (or small integers) in a window always make two. Windows
 * mixing two pointers with a few random bytes are the commonest near-miss in real heaps.
 */
const MAX_ZERO_PAIRS = 1;

/** Where a candidate lies: `isolated` = non-random on both sides; `aligned` = file offset % 8 === 0. */
export type Visit = (s: number, isolated: boolean, aligned: boolean) => void;

/**
 * Calls `visit` for every window start s in `starts` whose window passes the randomness test
 * and has a non-random neighbour block on at least one side. `base` is buf[0]'s file offset.
 */
export function forEachCandidate(
  buf: Buffer,
  starts: Range[],
  random8: Uint8Array,
  rule: WindowRule,
  base: number,
  visit: Visit,
): void {
  const W = rule.size;
  const { minDistinct, minHigh, maxZeros } = rule;
  const cnt = new Uint16Array(256);
  for (const [first, end] of starts) {
    if (end <= first) continue;
    cnt.fill(0);
    let distinct = 0;
    let high = 0;
    let zeroPairs = 0; // i in [s, s+W-1) with buf[i] = buf[i+1] = 0: one per pointer or small int
    for (let i = first; i < first + W; i++) {
      const x = buf[i]!;
      if (inc(cnt, x)) distinct++;
      high += x >> 7;
      if (x === 0 && i > first && buf[i - 1] === 0) zeroPairs++;
    }
    for (let s = first; ; s++) {
      const before = s >= 8 ? random8[s - 8]! : 0;
      const after = s + W + 8 <= buf.length ? random8[s + W]! : 0;
      if (
        (before === 0 || after === 0) &&
        distinct >= minDistinct &&
        high >= minHigh &&
        zeroPairs <= MAX_ZERO_PAIRS &&
        cnt[0]! <= maxZeros &&
        cnt[255]! <= maxZeros
      ) {
        visit(s, before === 0 && after === 0, ((base + s) & 7) === 0);
      }
      if (s + 1 >= end) break;
      const out = buf[s]!;
      if (dec(cnt, out)) distinct--;
      high -= out >> 7;
      if (out === 0 && buf[s + 1] === 0) zeroPairs--;
      const inb = buf[s + W]!;
      if (inc(cnt, inb)) distinct++;
      high += inb >> 7;
      if (inb === 0 && buf[s + W - 1] === 0) zeroPairs++;
    }
  }
}

/** Adds byte x to a histogram; true when x is new (typed-array `++` trips noUncheckedIndexedAccess). */
function inc(cnt: Uint16Array, x: number): boolean {
  const c = cnt[x]!;
  cnt[x] = c + 1;
  return c === 0;
}

/** Removes byte x from a histogram; true when x is gone. */
function dec(cnt: Uint16Array, x: number): boolean {
  const c = cnt[x]! - 1;
  cnt[x] = c;
  return c === 0;
}
