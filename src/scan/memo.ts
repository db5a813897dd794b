/**
 * Remembers which candidate scalars were already checked (by a public-key computation) and
 * found to be no known key, so that a value that occurs many times is checked once. A real
 * core repeats random-looking blocks (a third of the P-384 candidates of the benchmark core
 * were repeats) and the overlap between chunks is scanned twice.
 *
 * Only a 64-bit hash of each value is kept, in a fixed-size open-addressing table: no copy of
 * dump bytes (which may be other secrets), bounded memory. A value whose hash equals that of
 * an earlier, different non-matching value would be skipped: with at most 2^18 entries the
 * chance per lookup is below 2^-46, far below the randomness filter's 1e-6 miss rate. Values
 * that did match are never recorded, so every copy of a found key is reported. The hashes
 * start from per-process random seeds, so nobody can prepare a file whose values collide with
 * a key's on purpose (these are fast non-cryptographic hashes; the seeds raise the bar, they do
 * not make them a keyed PRF).
 */

import { randomBytes } from 'node:crypto';

const SLOTS_LOG2 = 19;
const SLOTS = 1 << SLOTS_LOG2;
/** Emptied when half full: probing stays short and the collision bound above holds. */
const MAX_ENTRIES = SLOTS >> 1;

export class CheckedValues {
  /** Per slot two 32-bit halves of a hash; (0, 0) marks an empty slot. */
  private readonly table = new Int32Array(2 * SLOTS);
  private entries = 0;
  private h1 = 0;
  private h2 = 0;
  private readonly seed1: number;
  private readonly seed2: number;

  constructor() {
    const seed = randomBytes(8);
    this.seed1 = seed.readInt32LE(0);
    this.seed2 = seed.readInt32LE(4);
  }

  /** True when `bytes` was recorded with `add` (hash equality). Remembers its hash for `add`. */
  has(bytes: Uint8Array): boolean {
    this.hash(bytes);
    const t = this.table;
    for (let i = this.h1 & (SLOTS - 1); ; i = (i + 1) & (SLOTS - 1)) {
      const a = t[2 * i]!;
      const b = t[2 * i + 1]!;
      if (a === 0 && b === 0) return false;
      if (a === this.h1 && b === this.h2) return true;
    }
  }

  /** Records the value last passed to `has` as checked and not a known key. */
  add(): void {
    if (this.entries >= MAX_ENTRIES) this.clear();
    const t = this.table;
    let i = this.h1 & (SLOTS - 1);
    while (t[2 * i] !== 0 || t[2 * i + 1] !== 0) i = (i + 1) & (SLOTS - 1);
    t[2 * i] = this.h1;
    t[2 * i + 1] = this.h2;
    this.entries++;
  }

  clear(): void {
    this.table.fill(0);
    this.entries = 0;
  }

  /** Two independent 32-bit hashes (FNV-1a and a murmur-style mix); never both zero. */
  private hash(bytes: Uint8Array): void {
    let a = (0x811c9dc5 ^ this.seed1) | 0;
    let b = (0x9747b28c ^ this.seed2) | 0;
    for (let i = 0; i < bytes.length; i++) {
      const x = bytes[i]!;
      a = Math.imul(a ^ x, 0x01000193);
      b = Math.imul(b ^ x, 0x5bd1e995);
      b ^= b >>> 15;
    }
    this.h1 = a;
    this.h2 = a === 0 && b === 0 ? 1 : b;
  }
}
