import type { KeyRecord } from './key';
import { shownKeyState, type ShownKeyState } from './key-roles';
import { effectiveState } from './key-state';
import { nextActions, pickSigningKey } from './next-actions';
import type { KeyPolicy } from './scope';
import { destroyDueAt, type KeyTimeline } from './timeline';

/** One row of `keywarden plan`: an existing key or one that rotation will create. */
export interface PlannedKey extends KeyTimeline {
  kid: string | null;
  /** `existing` rows come from the store; `planned` ones are what reconcile will create. */
  origin: 'existing' | 'planned';
  createAt: Date;
  stateNow: ShownKeyState | 'future';
}

/**
 * The future timeline of a scope: its live keys plus the next `rotations` keys, computed by
 * running the same pure decision reconcile uses at each instant it would next act. Touches
 * nothing: it is arithmetic on the policy.
 */
export function planRotations(
  policy: KeyPolicy,
  keys: readonly KeyRecord[],
  now: Date,
  rotations: number,
): PlannedKey[] {
  const signing = pickSigningKey(
    keys.filter((k) => k.status === 'ready'),
    now,
  );
  const rows: PlannedKey[] = keys
    .filter((k) => k.status === 'ready' && k.destroyedAt === null)
    .filter((k) => ['pending', 'active', 'retired'].includes(effectiveState(k, now)))
    .map((k) => ({
      kid: k.kid,
      origin: 'existing',
      createAt: k.createdAt,
      stateNow: shownKeyState(k, now, signing),
      publishAt: k.publishAt,
      activateAt: k.activateAt,
      retireAt: k.retireAt,
      expiresAt: k.expiresAt,
      destroyAt: destroyDueAt(policy, k),
    }));
  const simulated: KeyRecord[] = keys.filter((k) => k.status === 'ready').slice();
  let t = now;
  for (let i = 0; i < rotations; i++) {
    const create = nextActions(policy, simulated, t).find((a) => a.kind === 'create');
    if (create && create.kind === 'create') {
      rows.push({ kid: null, origin: 'planned', createAt: t, stateNow: 'future', ...create.timeline });
      simulated.push(fakeKey(create.timeline, t, i));
      continue;
    }
    // Jump to the instant the next successor is due.
    const latest = simulated
      .filter((k) => k.revokedAt === null && k.expiresAt > t)
      .reduce<KeyRecord | undefined>((a, b) => (!a || b.retireAt > a.retireAt ? b : a), undefined);
    if (!latest) break;
    t = new Date(latest.retireAt.getTime() - policy.prepublishSeconds * 1000);
    i--;
  }
  return rows.sort((a, b) => a.activateAt.getTime() - b.activateAt.getTime());
}

function fakeKey(tl: KeyTimeline, createdAt: Date, i: number): KeyRecord {
  return {
    id: `planned-${i}`,
    kid: null,
    scope: '',
    alg: 'ES256',
    status: 'ready',
    backendRef: { backend: '', ref: {} },
    publicJwk: null,
    publishAt: tl.publishAt,
    activateAt: tl.activateAt,
    retireAt: tl.retireAt,
    expiresAt: tl.expiresAt,
    revokedAt: null,
    revokedReason: null,
    destroyedAt: null,
    createdAt,
    createdBy: 'plan',
  };
}
