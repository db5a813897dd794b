import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { ruleFor } from '../../../src/scan/thresholds';
import {
  countWords,
  forEachCandidate,
  markRandom8,
  nonZeroSpans,
  stretches,
} from '../../../src/scan/windows';
import { heapLike } from '../../helpers/scan-fixtures';

/** Candidate starts in `buf` for windows of `size` bytes, through the same stages as the scanner. */
function candidates(
  buf: Buffer,
  size: number,
  base = 0,
): { s: number; isolated: boolean; aligned: boolean }[] {
  const spans = nonZeroSpans(buf);
  const starts = stretches(buf, countWords(buf, spans), ruleFor(size), spans);
  const random8 = new Uint8Array(buf.length);
  markRandom8(
    buf,
    starts.map(([a, b]) => [a - 8, b + size]),
    random8,
  );
  const out: { s: number; isolated: boolean; aligned: boolean }[] = [];
  forEachCandidate(buf, starts, random8, ruleFor(size), base, (s, isolated, aligned) =>
    out.push({ s, isolated, aligned }),
  );
  return out;
}

const TEXT = (b: number): boolean => (b >= 0x20 && b <= 0x7e) || b === 9 || b === 10 || b === 13;

/** The neighbour rule of docs/scan.md, per block, written plainly. */
function looksRandom8(buf: Buffer, p: number): boolean {
  const block = [...buf.subarray(p, p + 8)];
  const pointerLike = (block[0] === 0 && block[1] === 0) || (block[6] === 0 && block[7] === 0);
  return new Set(block).size >= 6 && !block.every(TEXT) && !pointerLike;
}

/** The candidate rule of docs/scan.md, checked at every start with no staging or shortcuts. */
function reference(
  buf: Buffer,
  size: number,
  base = 0,
): { s: number; isolated: boolean; aligned: boolean }[] {
  const { minDistinct, minHigh, maxZeros } = ruleFor(size);
  const out: { s: number; isolated: boolean; aligned: boolean }[] = [];
  for (let s = 0; s + size <= buf.length; s++) {
    const w = [...buf.subarray(s, s + size)];
    let zeroPairs = 0;
    for (let i = 1; i < size; i++) if (w[i] === 0 && w[i - 1] === 0) zeroPairs++;
    const looksRandom =
      new Set(w).size >= minDistinct &&
      w.filter((b) => b >= 0x80).length >= minHigh &&
      w.filter((b) => b === 0).length <= maxZeros &&
      w.filter((b) => b === 0xff).length <= maxZeros &&
      zeroPairs <= 1;
    const before = s >= 8 && looksRandom8(buf, s - 8);
    const after = s + size + 8 <= buf.length && looksRandom8(buf, s + size);
    if (looksRandom && (!before || !after)) {
      out.push({ s, isolated: !before && !after, aligned: (base + s) % 8 === 0 });
    }
  }
  return out;
}

/** Data that exercises every rule: random runs of all lengths between text, pointers, zeros, 0xff. */
function mixed(bytes: number, seed: number): Buffer {
  const out = heapLike(bytes, seed);
  const r = randomBytes(bytes);
  for (let at = 0, i = 0; at < bytes; i++) {
    const len = 8 + (r[i % r.length]! % 120);
    const kind = r[(i * 7 + 3) % r.length]! % 6;
    if (kind === 0) r.copy(out, at, at, Math.min(bytes, at + len)); // random run
    if (kind === 1) out.write('{"msg":"served","ms":12} '.repeat(8).slice(0, len), at, 'latin1');
    if (kind === 2) out.fill(0xff, at, Math.min(bytes, at + (len % 9)));
    if (kind === 3) out.fill(0, at, Math.min(bytes, at + len));
    at += len + (r[(i * 13 + 5) % r.length]! % 40);
  }
  // A zero page with random bytes right against both of its ends (windows across span edges).
  out.fill(0, 4096, 8192);
  r.copy(out, 4096 - 40, 0, 40);
  r.copy(out, 8192, 40, 80);
  // In a long run of text, windows with just the minimum of high bytes (the 32-byte rule's 3),
  // and 129 distinct values: bounds of the shortcuts that skip text by its high-byte count.
  const text = Buffer.from('{"level":"info","msg":"request served"}\n'.repeat(40)).subarray(0, 1500);
  text.copy(out, 9000);
  Buffer.from([...Array.from({ length: 29 }, (_, j) => j + 1), 0x80, 0x91, 0xa2]).copy(out, 9600);
  Buffer.from(Array.from({ length: 129 }, (_, j) => (j * 2 + 1) % 256)).copy(out, 12_000);
  return out;
}

describe('scan: candidate windows for raw key material', function () {
  this.timeout(20_000); // the plain reference below is slow on purpose
  it('offers exactly the windows the plain rule offers (staged filters are only shortcuts)', () => {
    for (let i = 0; i < 4; i++) {
      // Odd lengths, and a view at an odd byte offset (word counts cannot use 32-bit reads there).
      const data = mixed(14_000 + 13 * i, 40 + i);
      const buf = i % 2 === 0 ? data : Buffer.concat([Buffer.alloc(3), data]).subarray(3);
      for (const size of [32, 48, 128]) {
        assert.deepEqual(candidates(buf, size, i), reference(buf, size, i), `size ${size}, data ${i}`);
      }
    }
  });

  it('counts zero and high bytes per word exactly, at any alignment of the buffer', () => {
    const data = Buffer.concat([Buffer.alloc(1), mixed(9_000 + 5, 3)]);
    for (const view of [data.subarray(1), data.subarray(0, 8_000)]) {
      const spans: [number, number][] = [[0, view.length]];
      const { zeros, highs } = countWords(view, spans);
      for (let k = 0; k < zeros.length; k++) {
        const word = [...view.subarray(8 * k, 8 * k + 8)];
        assert.equal(zeros[k], word.filter((b) => b === 0).length + (8 - word.length), `zeros of word ${k}`);
        assert.equal(highs[k], word.filter((b) => b >= 0x80).length, `highs of word ${k}`);
      }
    }
  });

  it('computes thresholds that random 32/48/128-byte keys pass', () => {
    assert.deepEqual(ruleFor(32), { size: 32, minDistinct: 22, minHigh: 3, maxZeros: 4 });
    const r48 = ruleFor(48);
    assert.ok(r48.minDistinct >= 30 && r48.minDistinct < 40 && r48.maxZeros >= 3);
    const r128 = ruleFor(128);
    assert.ok(r128.minDistinct >= 80 && r128.minHigh >= 30);
  });

  it('offers every random key planted in zero fill, heap-like data and between text', () => {
    const contexts = [Buffer.alloc(4096), heapLike(4096, 21), Buffer.from('lorem ipsum dolor '.repeat(228))];
    let misses = 0;
    for (let i = 0; i < 600; i++) {
      const buf = Buffer.from(contexts[i % 3]!);
      // In heap-like data the key is an aligned allocation, as in memory; elsewhere any offset.
      const at = i % 3 === 1 ? 1000 + 8 * (i % 61) : 1000 + (i % 61);
      const size = [32, 48, 128, 129][i % 4]!; // 129: primes of an odd-sized modulus
      randomBytes(size).copy(buf, at);
      if (!candidates(buf, size).some((c) => c.s === at)) misses++;
    }
    // Each key fails the randomness test with probability < 4e-6: zero misses expected.
    assert.equal(misses, 0);
  });

  it('marks a block bordered by non-random bytes on both sides as isolated, and aligned by file offset', () => {
    const buf = Buffer.alloc(4096);
    randomBytes(32).copy(buf, 1024);
    const c = candidates(buf, 32).find((x) => x.s === 1024);
    assert.deepEqual(c, { s: 1024, isolated: true, aligned: true });
  });

  it('offers only the edges of long random runs, and nothing in text, pointers or zero pages', () => {
    const random = Buffer.concat([Buffer.alloc(8192), randomBytes(1 << 20), Buffer.alloc(8192)]);
    const found = candidates(random, 32);
    // A few starts around each edge, plus windows next to the rare random 8-byte blocks that
    // look non-random (~5e-4 of them): ~1,100 per MiB measured.
    assert.ok(found.length < 2000, `${found.length} candidates in 1 MiB of random data`);
    assert.ok(found.some((c) => c.s <= 8192) && found.some((c) => c.s >= 8192 + (1 << 20) - 40));
    const text = Buffer.from('{"level":"info","msg":"request served","ms":12}\n'.repeat(20_000));
    assert.equal(candidates(text, 32).length, 0);
    const pointers = Buffer.alloc(1 << 16);
    for (let o = 0; o < pointers.length; o += 8)
      pointers.writeBigUInt64LE(0x7f3a00000000n + BigInt(o * 977), o);
    assert.equal(candidates(pointers, 32).length, 0);
    assert.equal(candidates(Buffer.alloc(1 << 20), 32).length, 0);
  });
});
