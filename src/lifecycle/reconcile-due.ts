import { effectiveState } from '../policy/key-state';
import { nextActions, nextDecisionAt } from '../policy/next-actions';
import type { IntegrityReport } from './key-integrity';
import type { LifecycleContext } from './context';

/** Why a scope needs its full reconcile (locked, on the store) rather than none. */
export type ReconcileDueReason =
  'no-view' | 'rows-outside-view' | 'unsealed-keys' | 'action-due' | 'transition-to-record';

/**
 * The in-memory verdict on one scope: a full reconcile is due (and why), or nothing is, with the
 * scope's next decision instant (the scheduler's timer).
 */
export type ReconcileVerdict =
  { due: true; reason: ReconcileDueReason } | { due: false; nextDecisionAt: Date | null };

type Deps = Pick<LifecycleContext, 'config' | 'cache' | 'clock' | 'recordedStates'>;

/**
 * Readies this process's knowledge for a pass of in-memory checks: one key reload if the store
 * changed since the last (a row written behind the daemon's back, another daemon's work), and the
 * recorded states once per process. One store read per pass instead of several per scope.
 */
export async function prepareReconcileChecks(ctx: Deps): Promise<void> {
  await ctx.cache.refresh();
  await ctx.recordedStates.ensureLoaded();
}

/**
 * Whether reconcileScope would do anything for the scope now, decided from this process's key
 * cache without the scope lock or the store: it would not when the scope has no `generating` row
 * (a generation in progress or a crash leftover), no row the cache keeps out of its view, no key
 * waiting to be sealed, no action of `nextActions` (a key to create or destroy) and no key whose
 * effective state differs from the state last recorded for it. Anything this process cannot vouch
 * for answers "due", so the full reconcile decides (fail safe). The cache is only as fresh as its
 * last reload: callers run prepareReconcileChecks once per pass.
 */
export function reconcileVerdict(ctx: Deps, scopeName: string): ReconcileVerdict {
  // No view: keys not loaded yet, or a scope this config does not have (the full reconcile says so).
  const view = ctx.cache.view(scopeName);
  if (!view) return { due: true, reason: 'no-view' };
  const scope = view.scope;
  if (ctx.cache.rowsOutsideView(scopeName) > 0) return { due: true, reason: 'rows-outside-view' };
  if (unsealedScopes(ctx.cache.integrity.report).has(scopeName))
    return { due: true, reason: 'unsealed-keys' };
  const now = ctx.clock.now();
  const keys = view.records;
  if (nextActions(scope.policy, keys, now).length > 0) return { due: true, reason: 'action-due' };
  for (const k of keys) {
    if (ctx.recordedStates.get(k.id) !== effectiveState(k, now))
      return { due: true, reason: 'transition-to-record' };
  }
  return { due: false, nextDecisionAt: nextDecisionAt(scope.policy, keys, now) };
}

const unsealedByReport = new WeakMap<IntegrityReport, Set<string>>();

/** Scopes with a row refused as unsealed (reconcile seals them), once per integrity report. */
function unsealedScopes(report: IntegrityReport | null): ReadonlySet<string> {
  if (!report) return new Set();
  let scopes = unsealedByReport.get(report);
  if (!scopes) {
    scopes = new Set(report.refused.filter((r) => r.reason === 'unsealed').map((r) => r.scope));
    unsealedByReport.set(report, scopes);
  }
  return scopes;
}
