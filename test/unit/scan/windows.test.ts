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
function candidates(buf: Buffer, size: number): { s: number; isolated: boolean; aligned: boolean }[] {
  const spans = nonZeroSpans(buf);
  const starts = stretches(buf, countWords(buf, spans), ruleFor(size), spans);
  const random8 = new Uint8Array(buf.length);
  markRandom8(
    buf,
    starts.map(([a, b]) => [a - 8, b + size]),
    random8,
  );
  const out: { s: number; isolated: boolean; aligned: boolean }[] = [];
  forEachCandidate(buf, starts, random8, ruleFor(size), 0, (s, isolated, aligned) =>
    out.push({ s, isolated, aligned }),
  );
  return out;
}

describe('scan: candidate windows for raw key material', () => {
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
