import type { KeyTimes } from './key';

/**
 * Effective state of a key (I2): a pure function of its timestamps, its revocation and now.
 * Nothing stores it; signing, JWKS and verification compute it at request time, so a dead
 * scheduler cannot keep a key alive. One function, in the verify package, for the daemon and
 * relying parties alike.
 */
export { effectiveState } from '@keywarden/verify';
export type { KeyState } from '@keywarden/verify';
import type { KeyState } from '@keywarden/verify';

/** Published states appear in the scope's JWKS. */
export function isPublished(state: KeyState): boolean {
  return state === 'pending' || state === 'active' || state === 'retired';
}

/** Only active keys sign. */
export function canSign(state: KeyState): boolean {
  return state === 'active';
}

/** Active and retired keys verify (retired ones only tokens issued while they were active). */
export function canVerify(state: KeyState): boolean {
  return state === 'active' || state === 'retired';
}

/**
 * The next instant at which `effectiveState` of this key changes after `now`, or null if it
 * never changes again. JWKS caching must never outlive it.
 */
export function nextStateChangeAt(key: KeyTimes, now: Date): Date | null {
  const t = now.getTime();
  const instants = [key.activateAt, key.retireAt, key.expiresAt, key.revokedAt]
    .filter((d): d is Date => d !== null)
    .map((d) => d.getTime())
    .filter((ms) => ms > t);
  return instants.length === 0 ? null : new Date(Math.min(...instants));
}
