import type { KeyRecord } from './key';
import { shownKeyState, SHOWN_KEY_STATES, type ShownKeyState } from './key-roles';
import { effectiveState, isPublished } from './key-state';
import { latestLiveKey, pickSigningKey } from './next-actions';
import type { KeyPolicy } from './scope';
import { successorDueAt } from './timeline';

/**
 * What an operator watches about one scope at one instant (the lifecycle gauges of `/metrics`).
 * Durations are in seconds, fractional; the ones about the signing key are null when the scope
 * has none, so nothing reports the age of a key that does not exist.
 */
export interface ScopeStatus {
  /** Whether a key signs now (DESIGN.md §2: the active key with the latest activateAt). */
  hasActiveKey: boolean;
  /** How long the signing key has been signing: now - activateAt. */
  activeKeyAgeSeconds: number | null;
  /** How long until the signing key retires: retireAt - now. */
  activeKeyRetiresInSeconds: number | null;
  /**
   * How long until reconcile is due to create the next key (`prepublish` before the live key
   * that retires last retires). Negative once that instant has passed and the successor still
   * does not exist: reconcile is not running or keeps failing. Null without a signing key (then
   * reconcile must create one at once; `hasActiveKey` is what to alert on).
   */
  nextRotationInSeconds: number | null;
  /** Keys in the scope's JWKS now (pending, active, superseded and retired). */
  publishedKeys: number;
  /** Ready keys by their state as shown (key-roles.ts): `active` is 0 or 1, the signing key. */
  keysByState: Record<ShownKeyState, number>;
}

const secondsBetween = (from: Date, to: Date) => (to.getTime() - from.getTime()) / 1000;

/**
 * The status of a scope whose keys are `keys`, at `now`: the same pure rules signing, the JWKS
 * and reconcile use (effectiveState, pickSigningKey, the successor rule of nextActions).
 */
export function scopeStatus(policy: KeyPolicy, keys: readonly KeyRecord[], now: Date): ScopeStatus {
  const ready = keys.filter((k) => k.status === 'ready');
  const publishedKeys = ready.filter((k) => isPublished(effectiveState(k, now))).length;
  const signing = pickSigningKey(ready, now);
  const keysByState = Object.fromEntries(SHOWN_KEY_STATES.map((s) => [s, 0])) as Record<
    ShownKeyState,
    number
  >;
  for (const k of ready) keysByState[shownKeyState(k, now, signing)] += 1;
  if (!signing) {
    return {
      hasActiveKey: false,
      activeKeyAgeSeconds: null,
      activeKeyRetiresInSeconds: null,
      nextRotationInSeconds: null,
      publishedKeys,
      keysByState,
    };
  }
  // The signing key is live, so there is a latest live key.
  const latest = latestLiveKey(ready, now) as KeyRecord;
  return {
    hasActiveKey: true,
    activeKeyAgeSeconds: secondsBetween(signing.activateAt, now),
    activeKeyRetiresInSeconds: secondsBetween(now, signing.retireAt),
    nextRotationInSeconds: secondsBetween(now, successorDueAt(policy, latest.retireAt)),
    publishedKeys,
    keysByState,
  };
}
