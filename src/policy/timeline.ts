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
 * - a successor (`successorOf`) activates exactly when its predecessor retires: no gap, no
 *   overlap. Created on time (`retireAt - prepublish`) it is published a full prepublish first;
 *   created late (a reconcile a few ms after its timer, or a daemon back from downtime while
 *   the current key still signs) it is published for the time left. Activating it a full
 *   prepublish after `now` instead would leave the scope without a signing key between the two,
 *   and catch-up would then fill the gap with a key that signs with no prepublish at all.
 * - otherwise (operator rotation) it activates a full `prepublish` after `now`, or earlier, at
 *   `signingCoveredUntil`, when the keys that sign now stop before then (a rotation in the
 *   current key's last prepublish window with no successor yet): published for the time left,
 *   like a late successor, rather than leaving the scope without a signing key in between.
 * `expiresAt - publishAt` never exceeds the policy's lifetime (I1): a successor is only
 * created once `now >= successorOf.retireAt - prepublish`, so it activates at most a
 * prepublish after `now`.
 */
export function timelineForNewKey(
  policy: KeyPolicy,
  now: Date,
  mode:
    | { immediate: true }
    | { immediate: false; successorOf?: { retireAt: Date } | null; signingCoveredUntil?: Date },
): KeyTimeline {
  const publish = now.getTime();
  let activate = publish;
  if (!mode.immediate) {
    const prev = mode.successorOf?.retireAt.getTime();
    const full = publish + policy.prepublishSeconds * 1000;
    const covered = mode.signingCoveredUntil?.getTime() ?? Infinity;
    activate = prev !== undefined ? Math.max(prev, publish) : Math.max(publish, Math.min(full, covered));
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

/**
 * When the backend object of a key is destroyed: `destroyAfter` past expiry, or at once when it
 * was revoked (revocation is final in the backend: with the object gone, clearing the revocation
 * in the store cannot bring the key back).
 */
export function destroyDueAt(policy: KeyPolicy, key: { expiresAt: Date; revokedAt: Date | null }): Date {
  const afterExpiry = key.expiresAt.getTime() + policy.destroyAfterSeconds * 1000;
  return at(Math.min(afterExpiry, key.revokedAt?.getTime() ?? Infinity));
}
