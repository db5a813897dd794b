import { scopeStatus, type ScopeStatus } from '../policy/scope-status';
import type { LifecycleContext } from './context';

/** One configured scope's status. */
export interface ScopeOverviewRow {
  scope: string;
  status: ScopeStatus;
}

/**
 * Every configured scope's status at the context's now, from this process's key cache: no store
 * round trip, so a metrics scrape costs arithmetic only and works while the store is down (the
 * cache then holds the last keys it loaded). Internal lifecycles such as the audit key's
 * `_audit` are not configured scopes and never appear.
 */
export function scopeOverview(ctx: Pick<LifecycleContext, 'config' | 'cache' | 'clock'>): ScopeOverviewRow[] {
  const now = ctx.clock.now();
  return ctx.config.scopes.map((scope) => {
    const keys = ctx.cache.view(scope.name)?.records ?? [];
    return { scope: scope.name, status: scopeStatus(scope.policy, keys, now) };
  });
}
