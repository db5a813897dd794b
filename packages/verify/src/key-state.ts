/**
 * Effective state of a key (I2): a pure function of its timestamps, its revocation and now.
 * Nothing stores it; signing, JWKS and verification compute it at request time, so a dead
 * scheduler cannot keep a key alive. The daemon (policy/key-state.ts) and relying parties use
 * this one function.
 */
export type KeyState = 'pending' | 'active' | 'retired' | 'expired' | 'revoked';

/** The timestamps the effective state is computed from. */
export interface KeyStateTimes {
  activateAt: Date;
  retireAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

/** The state of a key with these times at `now`. */
export function effectiveState(key: KeyStateTimes, now: Date): KeyState {
  const t = now.getTime();
  if (key.revokedAt !== null && key.revokedAt.getTime() <= t) return 'revoked';
  if (t >= key.expiresAt.getTime()) return 'expired';
  if (t < key.activateAt.getTime()) return 'pending';
  if (t < key.retireAt.getTime()) return 'active';
  return 'retired';
}
