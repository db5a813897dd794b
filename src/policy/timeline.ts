import type { KeyPolicy } from './scope';

/** The instants of one key's life, fixed when it is created. */
export interface KeyTimeline {
  publishAt: Date;
  activateAt: Date;
  retireAt: Date;
  expiresAt: Date;
  /** When reconcile destroys the backend object (expiresAt + destroyAfter). */
  destroyAt: Date;
}

const at = (ms: number) => new Date(ms);

/**
 * Timeline of a key created at `now`.
 * - `immediate`: the scope has no usable key, so it signs at once (no prepublish wait).
 * - otherwise it activates after `prepublish`, and never before `successorOf.retireAt`, so a
 *   scheduled successor takes over exactly when its predecessor retires (no gap, no overlap).
 * `expiresAt - publishAt` never exceeds the policy's lifetime (I1): a successor is only
 * created once `now >= successorOf.retireAt - prepublish`, which makes the max() equal to
 * `now + prepublish` or less than a prepublish away.
 */
export function timelineForNewKey(
  policy: KeyPolicy,
  now: Date,
  mode: { immediate: true } | { immediate: false; successorOf?: { retireAt: Date } | null },
): KeyTimeline {
  const publish = now.getTime();
  let activate = publish;
  if (!mode.immediate) {
    activate = publish + policy.prepublishSeconds * 1000;
    const prev = mode.successorOf?.retireAt.getTime();
    if (prev !== undefined && prev > activate) activate = prev;
  }
  const retire = activate + policy.activeForSeconds * 1000;
  const expires = retire + policy.verifyGraceSeconds * 1000;
  return {
    publishAt: at(publish),
    activateAt: at(activate),
    retireAt: at(retire),
    expiresAt: at(expires),
    destroyAt: at(expires + policy.destroyAfterSeconds * 1000),
  };
}

/** When reconcile must create the successor of a key retiring at `retireAt`. */
export function successorDueAt(policy: KeyPolicy, retireAt: Date): Date {
  return at(retireAt.getTime() - policy.prepublishSeconds * 1000);
}

/** When the backend object of a key is destroyed: after expiry or revocation, whichever first. */
export function destroyDueAt(policy: KeyPolicy, key: { expiresAt: Date; revokedAt: Date | null }): Date {
  const end = Math.min(key.expiresAt.getTime(), key.revokedAt?.getTime() ?? Infinity);
  return at(end + policy.destroyAfterSeconds * 1000);
}
