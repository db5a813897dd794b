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
 * skipped by memcmp (64 KiB at a time); per-8-byte-word counts of zero and high bytes, read
 * four bytes at a time, rule out text (64 words at a time) and pointer-heavy memory; what is
 * left gets one sliding pass that judges every 8-byte neighbour block; and a window's own
 * histogram is only brought up to date where a neighbour is non-random, found by indexOf.
 * Each shortcut is exact: the candidates are those of the plain rule (a unit test compares).
 */
import type { WindowRule } from './thresholds';

/** A half-open byte range [start, end) of a buffer. */
export type Range = [number, number];

const BLOCK = 4096;
/** Zero runs are tried this many bytes at a time first: one native call per 64 KiB of a core. */
const BIG_BLOCK = 16 * BLOCK;
const ZEROS = Buffer.alloc(BIG_BLOCK); // never written

/** Maximal runs of 4 KiB blocks that are not all zero (core dumps are mostly zero pages). */
export function nonZeroSpans(buf: Buffer): Range[] {
  const spans: Range[] = [];
  let inZeros = true; // after a zero block (or at the start) the next 64 KiB are tried at once
  for (let a = 0; a < buf.length;) {
    if (inZeros && a + BIG_BLOCK <= buf.length && buf.compare(ZEROS, 0, BIG_BLOCK, a, a + BIG_BLOCK) === 0) {
      a += BIG_BLOCK;
      continue;
    }
    const e = Math.min(buf.length, a + BLOCK);
    inZeros = buf.compare(ZEROS, 0, e - a, a, e) === 0;
    if (!inZeros) {
      const last = spans[spans.length - 1];
      if (last !== undefined && last[1] === a) last[1] = e;
      else spans.push([a, e]);
    }
    a = e;
  }
  return spans;
}

/**
 * Per 8-byte word of a buffer (word k = bytes 8k..8k+7): how many bytes are 0x00 / >= 0x80,
 * and per block of 64 words the sum of `highs`, so that text (no high bytes at all) is
 * passed over a block at a time.
 */
export interface WordCounts {
  zeros: Uint8Array;
  highs: Uint8Array;
  blockHighs: Uint16Array;
}

/** log2 of the words per block of `blockHighs`. */
const BLOCK_SHIFT = 6;
const ONES = 0x01010101;

/**
 * Counts zero and high bytes per word inside `spans`; words outside count as all-zero.
 * `reuse` (a previous result at least as large) saves allocating and page-faulting fresh
 * arrays per chunk. Words are read four bytes at a time with exact SWAR bit tricks: this pass
 * touches every byte outside zero pages, text included, so it must be cheap.
 */
export function countWords(buf: Buffer, spans: Range[], reuse?: WordCounts): WordCounts {
  const words = Math.ceil(buf.length / 8);
  const blocks = (words >> BLOCK_SHIFT) + 1;
  const fits = reuse !== undefined && reuse.zeros.length >= words && reuse.blockHighs.length >= blocks;
  const zeros = fits ? reuse.zeros.subarray(0, words) : new Uint8Array(words);
  const highs = fits ? reuse.highs.subarray(0, words) : new Uint8Array(words);
  const blockHighs = fits ? reuse.blockHighs.subarray(0, blocks) : new Uint16Array(blocks);
  zeros.fill(8);
  highs.fill(0);
  blockHighs.fill(0);
  // Byte order does not matter for counting; only the view's alignment does.
  const u32 = buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, buf.length >> 2) : null;
  const wholeWords = buf.length >> 3;
  for (const [a, b] of spans) {
    const kEnd = Math.ceil(b / 8);
    let k = a >> 3;
    if (u32 !== null) {
      const stop = Math.min(kEnd, wholeWords);
      while (k < stop) {
        const blockEnd = Math.min(stop, ((k >> BLOCK_SHIFT) + 1) << BLOCK_SHIFT);
        let sum = 0; // high bytes in this block, written once (a read-modify-write per word costs)
        for (; k < blockEnd; k++) {
          const lo = u32[2 * k]!;
          const hi = u32[2 * k + 1]!;
          // Bit 0 of each byte lane of nl/nh = OR of that byte's 8 bits (the shifts only pull
          // bits of the same lane down to bit 0): 1 for a non-zero byte.
          let nl = lo | (lo >>> 1);
          nl |= nl >>> 2;
          nl |= nl >>> 4;
          let nh = hi | (hi >>> 1);
          nh |= nh >>> 2;
          nh |= nh >>> 4;
          const nz = (nl & ONES) + (nh & ONES); // per byte lane: 0..2
          const h = ((lo >>> 7) & ONES) + ((hi >>> 7) & ONES);
          const high = Math.imul(h, ONES) >>> 24; // the sum of the four lanes lands in the top byte
          zeros[k] = 8 - (Math.imul(nz, ONES) >>> 24);
          highs[k] = high;
          sum += high;
        }
        const blk = (k - 1) >> BLOCK_SHIFT;
        blockHighs[blk] = blockHighs[blk]! + sum;
      }
    }
    for (; k < kEnd; k++) {
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
      const blk = k >> BLOCK_SHIFT;
      blockHighs[blk] = blockHighs[blk]! + h;
    }
  }
  return { zeros, highs, blockHighs };
}

/**
 * Ranges of window starts [first, end) where a window of `rule.size` bytes might pass the
 * randomness test, judged from word counts alone: a window starting in word k contains words
 * k+1 .. k+n-1 whole (n = floor(size / 8)) and touches no word outside k .. k+ceil(size / 8).
 * A necessary condition, never a guess: it only removes starts whose window certainly fails.
 * A block of 64 starts is skipped at once when all the words its windows touch together hold
 * fewer high bytes than the rule needs (text, pointer tables).
 */
export function stretches(buf: Buffer, counts: WordCounts, rule: WindowRule, spans: Range[]): Range[] {
  const n = Math.floor(rule.size / 8); // words k+1 .. k+n-1 lie inside every window from word k
  const m = Math.ceil(rule.size / 8); // words k .. k+m are all a window from word k can touch
  const { zeros, highs, blockHighs } = counts;
  const { maxZeros, minHigh } = rule;
  const words = zeros.length;
  const lastStart = buf.length - rule.size;
  const out: Range[] = [];
  let openEnd = -1; // end of the last range in `out`
  let done = 0; // words before this were already looked at (spans are sorted)
  for (const [a, b] of spans) {
    // Windows that touch the span start up to `size` bytes before it; words outside spans are zero.
    const from = Math.max(done, Math.floor(Math.max(0, a - rule.size) / 8));
    const to = Math.min(words, Math.ceil(b / 8));
    if (from >= to) continue;
    done = to;
    const stop = Math.min(to, Math.floor(lastStart / 8) + 1); // starts 8k <= lastStart
    let fresh = true; // the running sums below must be recomputed at k
    let fullZeros = 0; // zeros in words k+1 .. k+n-1
    let touchedHighs = 0; // highs in words k .. k+m
    for (let k = from; k < stop;) {
      const block = k >> BLOCK_SHIFT;
      const blockEnd = Math.min(stop, (block + 1) << BLOCK_SHIFT);
      // Every window starting in this block touches only words up to blockEnd - 1 + m.
      const lastBlock = Math.min(blockHighs.length - 1, (blockEnd - 1 + m) >> BLOCK_SHIFT);
      let reachable = 0;
      for (let c = block; c <= lastBlock; c++) reachable += blockHighs[c]!;
      if (reachable < minHigh) {
        k = blockEnd;
        fresh = true;
        continue;
      }
      if (fresh) {
        fullZeros = 0;
        touchedHighs = 0;
        for (let j = k + 1; j < k + n && j < words; j++) fullZeros += zeros[j]!;
        for (let j = k; j <= k + m && j < words; j++) touchedHighs += highs[j]!;
        fresh = false;
      }
      // Far from the end of the arrays the running sums need no bounds checks (measured ~40%
      // faster); near it, reads past the end count as 0.
      for (const safe = Math.min(blockEnd, words - m - 1); k < safe; k++) {
        if (fullZeros <= maxZeros && touchedHighs >= minHigh)
          openEnd = extend(out, openEnd, 8 * k, lastStart);
        fullZeros += zeros[k + n]! - zeros[k + 1]!;
        touchedHighs += highs[k + m + 1]! - highs[k]!;
      }
      for (; k < blockEnd; k++) {
        if (fullZeros <= maxZeros && touchedHighs >= minHigh)
          openEnd = extend(out, openEnd, 8 * k, lastStart);
        fullZeros += (k + n < words ? zeros[k + n]! : 0) - (k + 1 < words ? zeros[k + 1]! : 0);
        touchedHighs += (k + m + 1 < words ? highs[k + m + 1]! : 0) - highs[k]!;
      }
    }
  }
  return out;
}

/** Adds the starts [first, first + 8) (clipped to lastStart) to `out`; returns the new last end. */
function extend(out: Range[], openEnd: number, first: number, lastStart: number): number {
  const end = first + 8 <= lastStart + 1 ? first + 8 : lastStart + 1;
  if (openEnd === first) out[out.length - 1]![1] = end;
  else out.push([first, end]);
  return end;
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
 * which can only add candidates. For a range [a, b) positions a..b are computed (b included:
 * the block right after a window [s, b) starts at b); ranges may overlap and come in any
 * order (one list per window size): they are merged so that each byte is looked at once.
 */
export function markRandom8(buf: Buffer, ranges: Range[], out: Uint8Array): void {
  out.fill(0, 0, buf.length);
  const cnt = new Uint16Array(256);
  for (const [a, b] of mergeRanges(ranges, buf.length)) {
    const end = Math.min(buf.length, b + 8);
    if (end - a < 8) continue;
    cnt.fill(0);
    let distinct = 0;
    let text = 0;
    for (let i = a; i < a + 8; i++) {
      const x = buf[i]!;
      if (inc(cnt, x)) distinct++;
      text += TEXT[x]!;
    }
    for (let p = a; ; p++) {
      if (distinct >= 6 && text < 8) {
        const pointerLike = (buf[p] === 0 && buf[p + 1] === 0) || (buf[p + 6] === 0 && buf[p + 7] === 0);
        if (!pointerLike) out[p] = 1;
      }
      if (p + 8 >= end) break;
      const gone = buf[p]!;
      const come = buf[p + 8]!;
      if (dec(cnt, gone)) distinct--;
      if (inc(cnt, come)) distinct++;
      text += TEXT[come]! - TEXT[gone]!;
    }
  }
}

/** Sorted union of ranges clipped to [0, length); ranges that overlap or touch are joined. */
function mergeRanges(ranges: Range[], length: number): Range[] {
  const sorted = ranges
    .map(([a, b]): Range => [Math.max(0, a), Math.min(length, b)])
    .filter(([a, b]) => a < b)
    .sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
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
 *
 * The edge rule is checked first: in random data it fails almost everywhere, so runs of
 * starts with random blocks on both sides are jumped over with (native) `indexOf` on
 * `random8`, and the window's histogram is only brought up to date where a neighbour is
 * non-random: slid from the last window tested when that is near, else rebuilt.
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
  const len = buf.length;
  const lastBlock = len - 8; // random8[p] is meaningful for p <= lastBlock (a whole block)
  const r8 = random8.subarray(0, Math.max(0, lastBlock + 1)); // bounds every indexOf below
  const { minDistinct, minHigh, maxZeros } = rule;
  const cnt = new Uint16Array(256);
  let at = -1; // start of the window the histogram describes; -1: none
  let distinct = 0;
  let high = 0;
  let zeroPairs = 0; // i in [at, at+W-1) with buf[i] = buf[i+1] = 0: one per pointer or small int
  for (const [first, end] of starts) {
    for (let s = first; s < end; s++) {
      const before = s >= 8 ? r8[s - 8]! : 0; // no block before the buffer: not random
      const after = s + W <= lastBlock ? r8[s + W]! : 0;
      if (before !== 0 && after !== 0) {
        // Next start whose block before (p = s' - 8) or after (p = s' + W) is non-random.
        const pb = r8.indexOf(0, s - 7);
        const pa = r8.indexOf(0, s + W + 1);
        const next = Math.min(
          pb === -1 ? len : pb + 8, // len: past every start
          pa === -1 ? lastBlock - W + 1 : pa - W, // past lastBlock the block after counts as 0
        );
        s = next - 1; // the loop's s++ lands on it
        continue;
      }
      if (at >= 0 && s > at && 2 * (s - at) < W) {
        for (; at < s; at++) {
          const out = buf[at]!;
          if (dec(cnt, out)) distinct--;
          high -= out >> 7;
          if (out === 0 && buf[at + 1] === 0) zeroPairs--;
          const inb = buf[at + W]!;
          if (inc(cnt, inb)) distinct++;
          high += inb >> 7;
          if (inb === 0 && buf[at + W - 1] === 0) zeroPairs++;
        }
      } else if (at !== s) {
        cnt.fill(0);
        distinct = 0;
        high = 0;
        zeroPairs = 0;
        for (let i = s; i < s + W; i++) {
          const x = buf[i]!;
          if (inc(cnt, x)) distinct++;
          high += x >> 7;
          if (x === 0 && i > s && buf[i - 1] === 0) zeroPairs++;
        }
        at = s;
      }
      if (
        distinct >= minDistinct &&
        high >= minHigh &&
        zeroPairs <= MAX_ZERO_PAIRS &&
        cnt[0]! <= maxZeros &&
        cnt[255]! <= maxZeros
      ) {
        visit(s, before === 0 && after === 0, ((base + s) & 7) === 0);
      }
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
