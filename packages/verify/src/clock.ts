/**
 * Where now comes from. Validation never reads the system time itself when given a Clock, so
 * tests move a clock instead of sleeping (I2: state is a pure function of timestamps and now).
 */
export interface Clock {
  now(): Date;
}

/** The system's time. */
export const systemClock: Clock = { now: () => new Date() };
