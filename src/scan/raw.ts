import { createECDH, createPrivateKey, createPublicKey, type ECDH } from 'node:crypto';
import type { IndexedKey, KnownKeyIndex, KnownModulus } from './known-keys';
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
  readonly stats: RawStats = { candidates: 0, publicKeyComputations: 0, bigintDivisions: 0 };
  private random8 = new Uint8Array(0);
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

  /** All raw hits in `buf`, whose first byte is at file offset `base`; `spans` from nonZeroSpans. */
  scan(buf: Buffer, base: number, spans: Range[] = nonZeroSpans(buf)): RawHit[] {
    const hits: RawHit[] = [];
    if (!this.active) return hits;
    const counts = countWords(buf, spans);
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
            this.ecMatch(p256, this.index.p256, w, s, 'raw-ec-be', hits);
            if (ownBuffer) {
              reverseInto(w, reversed32);
              this.ecMatch(p256, this.index.p256, reversed32, s, 'raw-ec-le', hits);
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
          if (!aligned || !isolated) return; // ~1.25 ms per check: BIGNUM-like blocks only
          const w = buf.subarray(s, s + 48);
          this.ecMatch(p384, this.index.p384, w, s, 'raw-ec-be', hits);
          reverseInto(w, reversed48);
          this.ecMatch(p384, this.index.p384, reversed48, s, 'raw-ec-le', hits);
        },
      });
    }
    for (const [size, moduli] of this.rsaSizes) {
      passes.push({ size, visit: (s) => this.rsaMatch(buf, s, size, moduli, hits) });
    }
    const starts = passes.map((p) => stretches(buf, counts, ruleFor(p.size), spans));
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
    known: Map<string, IndexedKey>,
    scalar: Buffer,
    s: number,
    encoding: Encoding,
    hits: RawHit[],
  ): void {
    this.stats.publicKeyComputations++;
    let x: string;
    try {
      ecdh.setPrivateKey(scalar); // computes scalar * G
      const pub = ecdh.getPublicKey();
      x = pub.toString('latin1', 1, 1 + (pub.length - 1) / 2);
    } catch {
      return; // zero or >= the group order: not a scalar
    }
    const entry = known.get(x);
    if (entry !== undefined) hits.push({ offset: s, length: scalar.length, encoding, entry });
  }

  private edMatch(seed: Buffer, s: number, hits: RawHit[]): void {
    this.stats.publicKeyComputations++;
    const jwk = { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: DUMMY_X };
    const pub = createPublicKey(createPrivateKey({ key: jwk, format: 'jwk' })).export({ format: 'jwk' });
    const entry = typeof pub.x === 'string' ? this.index.ed25519.get(pub.x) : undefined;
    if (entry !== undefined) hits.push({ offset: s, length: 32, encoding: 'raw-ed25519-seed', entry });
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

function reverseInto(src: Buffer, dst: Buffer): void {
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = src[n - 1 - i]!;
}
