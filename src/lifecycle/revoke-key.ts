import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { effectiveState } from '../policy/key-state';
import { pickSigningKey } from '../policy/next-actions';
import { timelineForNewKey } from '../policy/timeline';
import { runLocked } from './ports';
import { requireScope, type LifecycleContext } from './context';
import { destroyKeyObjects } from './destroy-key';
import { generateKey } from './generate-key';
import { trustedKeys } from './trusted-keys';

export interface RevokeResult {
  revoked: KeyRecord;
  /**
   * The key's backend objects were destroyed at once (revocation is final in the backend). False
   * when the backend could not be reached: reconcile retries until they are gone.
   */
  destroyed: boolean;
  /** Generated when the revocation left the scope without an active key; signs at once. */
  replacement: KeyRecord | null;
}

/**
 * Emergency revocation (DESIGN.md §4): `revokedAt = now`, so the key leaves the JWKS and
 * stops signing and verifying everywhere as soon as each daemon's cache refreshes; then its
 * backend objects are destroyed at once, so clearing `revoked_at` in the store cannot bring it
 * back (docs/security-model.md). If that leaves the scope without an active key, a replacement
 * is generated and active at once.
 */
export async function revokeKey(
  ctx: LifecycleContext,
  kidOrPrefix: string,
  reason: string,
  actor: string,
): Promise<RevokeResult> {
  if (typeof reason !== 'string' || reason.trim().length === 0) {
    throw new KeywardenError('REQUEST_INVALID', 'a revocation needs a reason (--reason TEXT)');
  }
  const found = await ctx.keys.findByKidOrPrefix(kidOrPrefix);
  if (!found || found.kid === null)
    throw new KeywardenError('KEY_NOT_FOUND', `no key with kid ${kidOrPrefix}`);
  const scope = requireScope(ctx, found.scope);
  return runLocked(ctx.lock, scope.name, async () => {
    const now = ctx.clock.now();
    const key = (await ctx.keys.findById(found.id)) as KeyRecord;
    const state = effectiveState(key, now);
    if (state === 'revoked') {
      throw new KeywardenError(
        'KEY_NOT_USABLE',
        `key ${key.kid} was already revoked at ${key.revokedAt?.toISOString()}`,
      );
    }
    if (state === 'expired') {
      throw new KeywardenError(
        'KEY_NOT_USABLE',
        `key ${key.kid} already expired at ${key.expiresAt.toISOString()}; nothing to revoke`,
      );
    }
    await ctx.store.transaction(async (tx) => {
      if (!(await tx.keys.revoke(key.id, now, reason.trim()))) {
        throw new KeywardenError('KEY_NOT_USABLE', `key ${key.kid} was revoked concurrently`);
      }
      // The transition is recorded here, with the operator and reason: reconcile must not log it again.
      await tx.keys.setLastState(key.id, 'revoked');
      await tx.audit.record({
        type: 'key.revoked',
        actor,
        scope: scope.name,
        kid: key.kid,
        data: { reason: reason.trim() },
      });
    });
    ctx.recordedStates.note(key.id, 'revoked');
    let destroyed: boolean;
    let replacement: KeyRecord | null = null;
    try {
      destroyed = await destroyRevoked(ctx, { ...key, revokedAt: now }, actor);
      const remaining = (await trustedKeys(ctx, scope.name, { reload: true })).filter(
        (k) => k.status === 'ready',
      );
      if (!pickSigningKey(remaining, now)) {
        replacement = await generateKey(
          ctx,
          scope,
          timelineForNewKey(scope.policy, now, { immediate: true }),
          actor,
          'replacement after revocation',
        );
      }
    } finally {
      // The revocation is committed: this process stops using the key now, even if the
      // replacement failed (the error still reaches the caller). The rows this changed are all
      // it reads (the store's change log names them).
      await ctx.cache.refresh();
    }
    return {
      revoked: { ...key, revokedAt: now, revokedReason: reason.trim(), destroyedAt: destroyed ? now : null },
      destroyed,
      replacement,
    };
  });
}

/** Destroys a just-revoked key's objects; false (logged, retried by reconcile) when it cannot yet. */
async function destroyRevoked(ctx: LifecycleContext, key: KeyRecord, actor: string): Promise<boolean> {
  try {
    await destroyKeyObjects(ctx, key);
  } catch (e) {
    ctx.log.error(
      { scope: key.scope, kid: key.kid, err: (e as Error).message },
      'revoked key: its backend objects could not be destroyed yet; reconcile retries',
    );
    return false;
  }
  const at = ctx.clock.now();
  await ctx.store.transaction(async (tx) => {
    await tx.keys.markDestroyed(key.id, at);
    await tx.audit.record({
      type: 'key.destroyed',
      actor,
      scope: key.scope,
      kid: key.kid,
      data: { reason: 'revoked' },
    });
  });
  return true;
}
