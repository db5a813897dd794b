/**
 * A token bucket on an injected clock: `capacity` tokens, refilled continuously at
 * `capacity` per `periodSeconds`. Bounds how often unknown kids may trigger a JWKS fetch, so
 * a flood of random kids cannot turn a verifier into a fetch amplifier.
 */
export class TokenBucket {
  // Kept in units of 1/periodMs of a token, so integer clocks and capacities refill exactly
  // (0.9 + 0.1 tokens in floating point is not 1).
  private scaled: number;
  private lastMs: number;
  private readonly periodMs: number;

  constructor(
    private readonly capacity: number,
    periodSeconds: number,
    nowMs: number,
  ) {
    if (!(Number.isFinite(capacity) && capacity >= 0)) throw new RangeError('capacity must be a number >= 0');
    if (!(Number.isFinite(periodSeconds) && periodSeconds > 0))
      throw new RangeError('periodSeconds must be > 0');
    this.periodMs = periodSeconds * 1000;
    this.scaled = capacity * this.periodMs;
    this.lastMs = nowMs;
  }

  /** Takes one token if available at `nowMs`; returns whether it did. */
  tryTake(nowMs: number): boolean {
    // A clock that moves backwards refills nothing rather than draining or overfilling.
    const elapsedMs = Math.max(0, nowMs - this.lastMs);
    this.lastMs = Math.max(this.lastMs, nowMs);
    this.scaled = Math.min(this.capacity * this.periodMs, this.scaled + elapsedMs * this.capacity);
    if (this.scaled < this.periodMs) return false;
    this.scaled -= this.periodMs;
    return true;
  }
}
