import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { effectiveState } from '../policy/key-state';
import { pickSigningKey } from '../policy/next-actions';
import { timelineForNewKey } from '../policy/timeline';
import { runLocked } from '../store/scope-lock';
import { requireScope, type LifecycleContext } from './context';
import { generateKey } from './generate-key';

export interface RevokeResult {
  revoked: KeyRecord;
  /** Generated when the revocation left the scope without an active key; signs at once. */
  replacement: KeyRecord | null;
}

/**
 * Emergency revocation (DESIGN.md §4): `revokedAt = now`, so the key leaves the JWKS and
 * stops signing and verifying everywhere as soon as each daemon's cache refreshes. If that
 * leaves the scope without an active key, a replacement is generated and active at once.
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
    await ctx.ds.transaction(async (m) => {
      if (!(await ctx.keys.revoke(key.id, now, reason.trim(), m))) {
        throw new KeywardenError('KEY_NOT_USABLE', `key ${key.kid} was revoked concurrently`);
      }
      await ctx.audit.record(
        { type: 'key.revoked', actor, scope: scope.name, kid: key.kid, data: { reason: reason.trim() } },
        m,
      );
    });
    const remaining = (await ctx.keys.listByScope(scope.name)).filter((k) => k.status === 'ready');
    let replacement: KeyRecord | null = null;
    if (!pickSigningKey(remaining, now)) {
      replacement = await generateKey(
        ctx,
        scope,
        timelineForNewKey(scope.policy, now, { immediate: true }),
        actor,
        'replacement after revocation',
      );
    }
    await ctx.cache.refresh(true);
    return { revoked: { ...key, revokedAt: now, revokedReason: reason.trim() }, replacement };
  });
}
