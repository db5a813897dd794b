import type { KeyRecord } from './key';
import { effectiveState } from './key-state';
import type { KeyPolicy } from './scope';
import { destroyDueAt, successorDueAt, timelineForNewKey, type KeyTimeline } from './timeline';

/** What reconcile should do for one scope at one instant. */
export type ReconcileAction =
  | { kind: 'resolve-generating'; keyId: string }
  | { kind: 'create'; reason: 'no-active-key' | 'rotation-due'; timeline: KeyTimeline }
  | { kind: 'destroy'; keyId: string; kid: string | null };

/**
 * The reconcile decision (SPIRE's ShouldPrepareNext/ShouldActivateNext, as one pure function).
 * Idempotent by construction: after the actions are carried out, calling it again with the
 * same `now` returns only what failed.
 *
 * - A `generating` row is a crash leftover (generation runs under the scope lock): resolve it,
 *   and create nothing until it is resolved: completed, it may be the very key a `create` would
 *   duplicate (reconcile decides again right after resolving).
 * - No active key: create one that signs at once, even if a pending key exists; the pending
 *   one still takes over when it activates (signing picks the latest activateAt).
 * - Otherwise, once `now >= latest.retireAt - prepublish`, create the successor of the key
 *   that retires last, activating when it retires.
 * - Backend objects past `destroyAfter` (from expiry or revocation) are destroyed; rows stay.
 */
export function nextActions(policy: KeyPolicy, keys: readonly KeyRecord[], now: Date): ReconcileAction[] {
  const actions: ReconcileAction[] = [];
  for (const k of keys)
    if (k.status === 'generating') actions.push({ kind: 'resolve-generating', keyId: k.id });

  const ready = keys.filter((k) => k.status === 'ready');
  const hasActive = ready.some((k) => effectiveState(k, now) === 'active');
  const leftovers = actions.length > 0; // no create until they are resolved (see above)
  if (!leftovers && !hasActive) {
    actions.push({
      kind: 'create',
      reason: 'no-active-key',
      timeline: timelineForNewKey(policy, now, { immediate: true }),
    });
  } else if (!leftovers) {
    const latest = latestLiveKey(ready, now) as KeyRecord; // an active key is live
    if (now >= successorDueAt(policy, latest.retireAt)) {
      actions.push({
        kind: 'create',
        reason: 'rotation-due',
        timeline: timelineForNewKey(policy, now, { immediate: false, successorOf: latest }),
      });
    }
  }

  for (const k of ready) {
    if (k.destroyedAt === null && now >= destroyDueAt(policy, k)) {
      actions.push({ kind: 'destroy', keyId: k.id, kid: k.kid });
    }
  }
  return actions;
}

/**
 * Of the ready keys that are live now (active or pending), the one that retires last: rotation
 * creates its successor `prepublish` before it retires. Undefined when no key is live.
 */
export function latestLiveKey(keys: readonly KeyRecord[], now: Date): KeyRecord | undefined {
  let latest: KeyRecord | undefined;
  for (const k of keys) {
    if (k.status !== 'ready') continue;
    const s = effectiveState(k, now);
    if (s !== 'active' && s !== 'pending') continue;
    if (!latest || k.retireAt > latest.retireAt) latest = k;
  }
  return latest;
}

/**
 * Until when the scope has a signing key without a break, from `now`: the end of the chain of
 * ready keys whose active windows follow or overlap one another, starting with the keys active
 * now. `now` itself when no key is active. Operator rotation activates its key no later than this,
 * so it never opens a gap (a pending key after a gap does not extend the chain).
 */
export function signingCoveredUntil(keys: readonly KeyRecord[], now: Date): Date {
  const ready = keys.filter((k) => k.status === 'ready');
  let until = now.getTime();
  for (;;) {
    let next = until;
    for (const k of ready) {
      if (effectiveState(k, new Date(until)) !== 'active') continue;
      // It signs until it retires, or until a revocation already scheduled in its row.
      next = Math.max(next, Math.min(k.retireAt.getTime(), k.revokedAt?.getTime() ?? Infinity));
    }
    if (next === until) return new Date(until);
    until = next;
  }
}

/** The signing key: the active key with the latest activateAt (DESIGN.md §2). */
export function pickSigningKey<
  K extends Pick<KeyRecord, 'activateAt' | 'retireAt' | 'expiresAt' | 'revokedAt' | 'publishAt'>,
>(keys: readonly K[], now: Date): K | undefined {
  let best: K | undefined;
  for (const k of keys) {
    if (effectiveState(k, now) !== 'active') continue;
    if (!best || k.activateAt > best.activateAt) best = k;
  }
  return best;
}

/**
 * The next instant after `now` at which `nextActions` (or a key's state, which reconcile
 * records) will change: a successor falls due, a backend object falls due for destruction,
 * or a key activates, retires or expires. The scheduler arms a timer for it, so rotation
 * happens on time rather than on the next cron tick (a late successor would leave a gap).
 */
export function nextDecisionAt(policy: KeyPolicy, keys: readonly KeyRecord[], now: Date): Date | null {
  const t = now.getTime();
  const candidates: number[] = [];
  const ready = keys.filter((k) => k.status === 'ready');
  const latest = latestLiveKey(ready, now);
  if (latest) candidates.push(successorDueAt(policy, latest.retireAt).getTime());
  for (const k of ready) {
    if (k.destroyedAt === null) candidates.push(destroyDueAt(policy, k).getTime());
    for (const d of [k.activateAt, k.retireAt, k.expiresAt, k.revokedAt]) if (d) candidates.push(d.getTime());
  }
  const future = candidates.filter((c) => c > t);
  return future.length === 0 ? null : new Date(Math.min(...future));
}
