import type { Clock } from '../policy/clock';
import type { ErrorCode } from '../policy/errors';

/** A failure that has not been followed by a success yet. */
export interface StandingFailure {
  /** When the first of the failures in a row happened. */
  since: Date;
  /** Failures in a row. */
  count: number;
  code: ErrorCode;
  message: string;
}

/**
 * Key generations that fail this many times in a row (each reconcile tick, rotation or revocation
 * tries again) make the scope not ready: one failure may be a hiccup the next attempt gets over.
 */
export const GENERATION_FAILURES_NOT_READY = 2;

/**
 * What this process saw go wrong and not come right yet, per scope: signatures its backend refused
 * and key generations that failed. Readiness (readiness.ts) reads it; the sign path and key
 * generation feed it. Cheap on the hot path: a success is one Map lookup while nothing failed.
 */
export class ServiceHealth {
  private readonly signFailures = new Map<string, StandingFailure>();
  private readonly generationFailures = new Map<string, StandingFailure>();

  constructor(private readonly clock: Clock) {}

  signSucceeded(scope: string): void {
    if (this.signFailures.size > 0) this.signFailures.delete(scope);
  }

  signFailed(scope: string, code: ErrorCode, message: string): void {
    record(this.signFailures, scope, code, message, this.clock.now());
  }

  /** The backend failures of the scope's signatures since its last successful one. */
  signFailure(scope: string): StandingFailure | undefined {
    return this.signFailures.get(scope);
  }

  generationSucceeded(scope: string): void {
    this.generationFailures.delete(scope);
  }

  generationFailed(scope: string, code: ErrorCode, message: string): void {
    record(this.generationFailures, scope, code, message, this.clock.now());
  }

  /** The scope's failed key generations since its last successful one. */
  generationFailure(scope: string): StandingFailure | undefined {
    return this.generationFailures.get(scope);
  }
}

function record(
  map: Map<string, StandingFailure>,
  scope: string,
  code: ErrorCode,
  message: string,
  now: Date,
): void {
  const prior = map.get(scope);
  map.set(scope, { since: prior?.since ?? now, count: (prior?.count ?? 0) + 1, code, message });
}
