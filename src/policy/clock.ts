/**
 * Lifecycle code never reads the system time itself: it is handed a Clock. Tests move a
 * FakeClock instead of sleeping (I2: state is a pure function of timestamps and *now*).
 */
export { systemClock } from '@keywarden/verify';
export type { Clock } from '@keywarden/verify';
import type { Clock } from '@keywarden/verify';

/** A clock that only moves when told to. */
export class FakeClock implements Clock {
  private ms: number;
  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.ms = typeof start === 'number' ? start : start.getTime();
  }
  now(): Date {
    return new Date(this.ms);
  }
  set(at: Date | number): void {
    this.ms = typeof at === 'number' ? at : at.getTime();
  }
  advanceSeconds(seconds: number): Date {
    this.ms += seconds * 1000;
    return this.now();
  }
}
