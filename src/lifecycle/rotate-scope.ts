import type { KeyRecord } from '../policy/key';
import { pickSigningKey, signingCoveredUntil } from '../policy/next-actions';
import { timelineForNewKey } from '../policy/timeline';
import { runLocked } from './ports';
import { requireScope, type LifecycleContext } from './context';
import { generateKey } from './generate-key';
import { trustedKeys } from './trusted-keys';

/**
 * Operator rotation: creates the next key now with the normal prepublish, so it signs once
 * every cached JWKS knows it; the current key keeps verifying until it expires. It never opens
 * a gap: when the keys that sign now stop before a full prepublish has passed (the current key's
 * last prepublish window, its successor not made yet), the new key takes over when they stop,
 * published for the time left. With no active key at all, the new key signs at once.
 */
export async function rotateScope(
  ctx: LifecycleContext,
  scopeName: string,
  actor: string,
): Promise<KeyRecord> {
  const scope = requireScope(ctx, scopeName);
  const key = await runLocked(ctx.lock, scope.name, async () => {
    const now = ctx.clock.now();
    const keys = (await trustedKeys(ctx, scope.name, { reload: true })).filter((k) => k.status === 'ready');
    const immediate = !pickSigningKey(keys, now);
    const timeline = timelineForNewKey(
      scope.policy,
      now,
      immediate
        ? { immediate: true }
        : { immediate: false, signingCoveredUntil: signingCoveredUntil(keys, now) },
    );
    return generateKey(
      ctx,
      scope,
      timeline,
      actor,
      immediate ? 'operator rotation (no active key)' : 'operator rotation',
    );
  });
  // Reads the rows this rotation wrote (the store's change log names them), not every row.
  await ctx.cache.refresh();
  return key;
}
