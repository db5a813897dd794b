import { createECDH, createPrivateKey, createPublicKey, type ECDH } from 'node:crypto';
import type { IndexedKey, KnownKeyIndex, KnownModulus } from './known-keys';
import { CheckedValues } from './memo';
import type { Encoding } from './types';
import { ruleFor } from './thresholds';
import {
  countWords,
  forEachCandidate,
  markRandom8,
  nonZeroSpans,
  stretches,
  type Range,
  type Visit,
  type WordCounts,
} from './windows';

/** Raw bytes of a known key, found at `offset` (relative to the buffer). */
export interface RawHit {
  offset: number;
  length: number;
  encoding: Encoding;
  entry: IndexedKey;
}

/** Counters for the benchmark and docs: how much confirmation work the filters left. */
export interface RawStats {
  candidates: number;
  publicKeyComputations: number;
  /** Checks skipped because the same value was already checked (see memo.ts). */
  repeatsSkipped: number;
  bigintDivisions: number;
}

// node:crypto needs an `x` to import an OKP JWK but derives the public key from `d` alone.
const DUMMY_X = 'A'.repeat(43);

/**
 * Searches `buf` for raw private bytes of KNOWN keys only: an unknown key's raw bytes cannot
 * be told from random data, a known key's can, by recomputing its public half.
 * - EC P-256 scalars big-endian at every offset; little-endian (OpenSSL BIGNUM words) at
 *   8-byte-aligned offsets, and at any offset when the block is isolated.
 * - Ed25519 32-byte seeds at 8-byte-aligned offsets, and at any offset when isolated.
 * - EC P-384 scalars, both byte orders, at 8-byte-aligned offsets and only as isolated blocks:
 *   OpenSSL 3.0 computes ~800 P-384 public keys/s here (vs ~65,000 for P-256), see docs/scan.md.
 * - RSA prime factors of known moduli, both byte orders, at every offset: `n % p === 0`.
 */
export class RawScanner {
  readonly stats: RawStats = {
    candidates: 0,
    publicKeyComputations: 0,
    repeatsSkipped: 0,
    bigintDivisions: 0,
  };
  // Per-chunk work arrays, kept across chunks: fresh arrays per chunk cost page faults and GC.
  private random8 = new Uint8Array(0);
  private counts: WordCounts | undefined;
  private readonly checked = {
    p256: new CheckedValues(),
    p384: new CheckedValues(),
    ed25519: new CheckedValues(),
  };
  private readonly p256: ECDH | undefined;
  private readonly p384: ECDH | undefined;
  private readonly rsaSizes: Map<number, KnownModulus[]> = new Map();

  constructor(private readonly index: KnownKeyIndex) {
    if (index.p256.size > 0) this.p256 = createECDH('prime256v1');
    if (index.p384.size > 0) this.p384 = createECDH('secp384r1');
    for (const m of index.rsa) {
      const group = this.rsaSizes.get(m.primeBytes) ?? [];
      group.push(m);
      this.rsaSizes.set(m.primeBytes, group);
    }
  }

  /** Replaces the last scalar each ECDH object was given (possibly a found key) by a random one. */
  wipe(): void {
    this.p256?.generateKeys();
    this.p384?.generateKeys();
  }

  /** True when there is any known key whose raw form can be searched for. */
  get active(): boolean {
    return (
      this.p256 !== undefined ||
      this.p384 !== undefined ||
      this.index.ed25519.size > 0 ||
      this.rsaSizes.size > 0
    );
  }

  /**
   * All raw hits in `buf`, whose first byte is at file offset `base`; `spans` from nonZeroSpans.
   * Only windows starting in `owned` are tried: with overlapping chunks, each start belongs to
   * the one chunk whose buffer also holds the bytes around it (see scan-paths.ts), so the
   * overlap is not searched twice and no window is judged without its neighbours.
   */
  scan(
    buf: Buffer,
    base: number,
    spans: Range[] = nonZeroSpans(buf),
    owned: Range = [0, buf.length],
  ): RawHit[] {
    const hits: RawHit[] = [];
    if (!this.active || spans.length === 0) return hits; // zero pages hold no key
    const counts = countWords(buf, spans, this.counts);
    this.counts = counts;
    const passes: { size: number; visit: Visit }[] = [];
    const reversed32 = Buffer.alloc(32);
    const p256 = this.p256;
    const hasEd = this.index.ed25519.size > 0;
    if (p256 !== undefined || hasEd) {
      passes.push({
        size: 32,
        visit: (s, isolated, aligned) => {
          const w = buf.subarray(s, s + 32);
          // BIGNUM words and seed buffers are malloc'd: 8-byte aligned. Elsewhere only
          // isolated blocks are tried for them; big-endian scalars are tried everywhere.
          const ownBuffer = aligned || isolated;
          if (p256 !== undefined) {
            const seen = this.checked.p256;
            this.ecMatch(p256, seen, this.index.p256, w, s, 'raw-ec-be', hits);
            if (ownBuffer) {
              reverseInto(w, reversed32);
              this.ecMatch(p256, seen, this.index.p256, reversed32, s, 'raw-ec-le', hits);
            }
          }
          if (hasEd && ownBuffer) this.edMatch(w, s, hits);
        },
      });
    }
    const p384 = this.p384;
    const reversed48 = Buffer.alloc(48);
    if (p384 !== undefined) {
      passes.push({
        size: 48,
        visit: (s, isolated, aligned) => {
          if (!aligned || !isolated) return; // ~0.9 ms per check: BIGNUM-like blocks only
          const w = buf.subarray(s, s + 48);
          this.ecMatch(p384, this.checked.p384, this.index.p384, w, s, 'raw-ec-be', hits);
          reverseInto(w, reversed48);
          this.ecMatch(p384, this.checked.p384, this.index.p384, reversed48, s, 'raw-ec-le', hits);
        },
      });
    }
    for (const [size, moduli] of this.rsaSizes) {
      passes.push({ size, visit: (s) => this.rsaMatch(buf, s, size, moduli, hits) });
    }
    const starts = passes.map((p) => clip(stretches(buf, counts, ruleFor(p.size), spans), owned));
    if (this.random8.length < buf.length) this.random8 = new Uint8Array(buf.length);
    const neighbours = passes.flatMap((p, i) => starts[i]!.map(([a, b]): Range => [a - 8, b + p.size]));
    markRandom8(buf, neighbours, this.random8);
    passes.forEach((p, i) =>
      forEachCandidate(buf, starts[i]!, this.random8, ruleFor(p.size), base, (s, isolated, aligned) => {
        this.stats.candidates++;
        p.visit(s, isolated, aligned);
      }),
    );
    reversed32.fill(0);
    reversed48.fill(0);
    return hits;
  }

  private ecMatch(
    ecdh: ECDH,
    seen: CheckedValues,
    known: Map<string, IndexedKey>,
    scalar: Buffer,
    s: number,
    encoding: Encoding,
    hits: RawHit[],
  ): void {
    if (seen.has(scalar)) {
      this.stats.repeatsSkipped++;
      return;
    }
    this.stats.publicKeyComputations++;
    let entry: IndexedKey | undefined;
    try {
      ecdh.setPrivateKey(scalar); // computes scalar * G
      const pub = ecdh.getPublicKey();
      entry = known.get(pub.toString('latin1', 1, 1 + (pub.length - 1) / 2));
    } catch {
      // zero or >= the group order: not a scalar
    }
    if (entry === undefined) seen.add();
    else hits.push({ offset: s, length: scalar.length, encoding, entry });
  }

  private edMatch(seed: Buffer, s: number, hits: RawHit[]): void {
    const seen = this.checked.ed25519;
    if (seen.has(seed)) {
      this.stats.repeatsSkipped++;
      return;
    }
    this.stats.publicKeyComputations++;
    // ~50 µs, nearly all in the import (OpenSSL 3 key management); the JWK path is the
    // cheapest node:crypto offers (a PKCS#8 DER import measured ~600 µs).
    const jwk = { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: DUMMY_X };
    const pub = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' });
    const entry = typeof pub.x === 'string' ? this.index.ed25519.get(pub.x) : undefined;
    if (entry === undefined) seen.add();
    else hits.push({ offset: s, length: 32, encoding: 'raw-ed25519-seed', entry });
  }

  private rsaMatch(buf: Buffer, s: number, size: number, moduli: KnownModulus[], hits: RawHit[]): void {
    // Primes of an RSA key have their top bit set (n has full length) and are odd.
    const first = buf[s]!;
    const lastByte = buf[s + size - 1]!;
    if (first >= 0x80 && (lastByte & 1) === 1) {
      this.tryPrime(BigInt('0x' + buf.toString('hex', s, s + size)), s, size, 'raw-rsa-prime', moduli, hits);
    }
    if ((first & 1) === 1 && lastByte >= 0x80) {
      const le = Buffer.from(buf.subarray(s, s + size)).reverse();
      this.tryPrime(BigInt('0x' + le.toString('hex')), s, size, 'raw-rsa-prime-le', moduli, hits);
      le.fill(0);
    }
  }

  private tryPrime(
    p: bigint,
    s: number,
    size: number,
    encoding: Encoding,
    moduli: KnownModulus[],
    hits: RawHit[],
  ) {
    for (const m of moduli) {
      this.stats.bigintDivisions++;
      if (m.n % p === 0n && p !== m.n) hits.push({ offset: s, length: size, encoding, entry: m.entry });
    }
  }
}

/** The parts of sorted, disjoint `ranges` inside [lo, hi). */
function clip(ranges: Range[], [lo, hi]: Range): Range[] {
  const out: Range[] = [];
  for (const [a, b] of ranges) {
    const from = Math.max(a, lo);
    const to = Math.min(b, hi);
    if (from < to) out.push([from, to]);
  }
  return out;
}

function reverseInto(src: Buffer, dst: Buffer): void {
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = src[n - 1 - i]!;
}
