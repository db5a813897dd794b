import type { KeyRecord } from '../policy/key';
import type { LifecycleContext } from './context';

/**
 * The scope's key rows a decision may count (reconcile, rotation, revocation's replacement, the
 * scheduler's next wake-up): every row but those the integrity check refused. `generating` rows
 * are included: their recovery checks them against the backend itself. With `reload`, this
 * process's keys are reloaded first if the store changed since the last load, so a row written
 * since then is checked before it can stand in for a key or drive a destruction: callers pass it
 * once per locked decision, not for the re-reads after their own writes.
 */
export async function trustedKeys(
  ctx: Pick<LifecycleContext, 'cache' | 'keys'>,
  scope: string,
  opts: { reload: boolean },
): Promise<KeyRecord[]> {
  if (opts.reload) await ctx.cache.refresh();
  const refused = new Set(ctx.cache.integrity.refusedIn(scope).map((r) => r.keyId));
  return (await ctx.keys.listByScope(scope)).filter((k) => !refused.has(k.id));
}
