import type { KeyRecord } from '../policy/key';
import type { LifecycleContext } from './context';

/**
 * Destroys the backend objects of `row`'s key, never another row's: what the row's reference
 * points at, unless its label or tags name another row (KeyBackend.destroy's `owner`).
 *
 * For a revoked row, also every object in every configured backend whose label or tags name the
 * row: a revocation's time is not sealed (it comes after the seal), so a row whose reference was
 * pointed at nothing before `keys revoke` would otherwise leave the real key alive, for the row to
 * be pointed back at and un-revoked. Revocations are rare; other destructions (expiry, crash
 * leftovers) skip the listing, since their rows' times and references are sealed. Throws when a
 * backend cannot be listed or asked, so the caller retries before it records the key as destroyed.
 */
export async function destroyKeyObjects(
  ctx: Pick<LifecycleContext, 'config' | 'backend'>,
  row: Pick<KeyRecord, 'id' | 'backendRef' | 'revokedAt'>,
): Promise<void> {
  if (row.revokedAt !== null) {
    for (const name of Object.keys(ctx.config.backends)) {
      const backend = await ctx.backend(name);
      for (const entry of await backend.inventory()) {
        if (entry.keyId === row.id) await backend.destroy(entry.ref, row.id);
      }
    }
    // Every configured backend was searched: a reference to one that is not configured has nothing left.
    if (!ctx.config.backends[row.backendRef.backend]) return;
  }
  await (await ctx.backend(row.backendRef.backend)).destroy(row.backendRef, row.id);
}
