import { KeywardenError, type ErrorCode } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { KEY_STATE_EVENTS } from '../policy/audit-events';
import { effectiveState } from '../policy/key-state';
import { nextActions, type ReconcileAction } from '../policy/next-actions';
import type { ScopeConfig } from '../policy/scope';
import { destroyKeyObjects } from './destroy-key';
import { generateKey, recoverGenerating } from './generate-key';
import { requireScope, type LifecycleContext } from './context';
import { sealLegacyKeys } from './seal-legacy-keys';
import { trustedKeys } from './trusted-keys';

/** What one reconcile step did: an action of nextActions, or sealing a key made before sealing. */
export type ReconcileStep = ReconcileAction['kind'] | 'seal-legacy';

/** What one reconcile pass of one scope did. */
export interface ReconcileReport {
  scope: string;
  /** False when another process held the scope lock (it is reconciling instead). */
  ran: boolean;
  done: { action: ReconcileStep; kid?: string | null; detail?: string }[];
  errors: { action: ReconcileStep; message: string; code: ErrorCode }[];
}

/**
 * Makes one scope right at the current instant (DESIGN.md §4): decide with the pure
 * `nextActions`, then carry each action out under the scope lock. Idempotent: a second pass
 * (here or on another daemon) finds nothing to do. Errors are reported per action and never
 * thrown, so one failing backend cannot stop the others or the daemon.
 */
export async function reconcileScope(
  ctx: LifecycleContext,
  scopeName: string,
  actor = 'scheduler',
): Promise<ReconcileReport> {
  const scope = requireScope(ctx, scopeName);
  const report: ReconcileReport = { scope: scope.name, ran: false, done: [], errors: [] };
  const outcome = await ctx.lock.tryRun(scope.name, async () => {
    report.ran = true;
    // Rows the integrity check refused do not exist for decisions: a row inserted in the store
    // must not stand in for a key, and a tampered one's times must not drive its destruction. A
    // row written since this process last checked its keys is checked now (one reload, if the
    // store changed), before sealing or deciding anything.
    await ctx.cache.refresh();
    await sealLegacy(ctx, scope, actor, report);
    const listTrusted = () => trustedKeys(ctx, scope.name, { reload: false });
    let keys = await listTrusted();
    const now = ctx.clock.now();
    const run = async (action: ReconcileAction) => {
      try {
        report.done.push(await execute(ctx, scope, keys, action, actor));
      } catch (e) {
        report.errors.push({ action: action.kind, message: (e as Error).message, code: errorCode(e) });
        ctx.log.error(
          { scope: scope.name, action: action.kind, err: (e as Error).message },
          'reconcile action failed',
        );
      }
    };
    let actions = nextActions(scope.policy, keys, now);
    // Crash leftovers first, then decide again: a completed leftover may be the very key a
    // `create` would otherwise duplicate (nextActions creates nothing while any are present).
    const leftovers = actions.filter((a) => a.kind === 'resolve-generating');
    if (leftovers.length > 0) {
      for (const action of leftovers) await run(action);
      keys = await listTrusted();
      actions = nextActions(scope.policy, keys, now).filter((a) => a.kind !== 'resolve-generating');
    }
    for (const action of actions) await run(action);
    await recordTransitions(ctx, scope, await listTrusted(), now, actor);
  });
  // The rows the actions wrote (the store's change log names them), not every row.
  if (outcome.ran && report.done.length > 0) await ctx.cache.refresh();
  return report;
}

async function execute(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  keys: KeyRecord[],
  action: ReconcileAction,
  actor: string,
): Promise<ReconcileReport['done'][number]> {
  switch (action.kind) {
    case 'create': {
      const key = await generateKey(ctx, scope, action.timeline, actor, action.reason);
      return { action: 'create', kid: key.kid, detail: action.reason };
    }
    case 'resolve-generating': {
      const row = keys.find((k) => k.id === action.keyId) as KeyRecord;
      const r = await recoverGenerating(ctx, row, actor);
      return r.outcome === 'completed'
        ? { action: 'resolve-generating', kid: r.key.kid, detail: 'completed' }
        : { action: 'resolve-generating', kid: null, detail: 'removed' };
    }
    case 'destroy': {
      const row = keys.find((k) => k.id === action.keyId) as KeyRecord;
      await destroyKeyObjects(ctx, row);
      const at = ctx.clock.now();
      await ctx.store.transaction(async (tx) => {
        await tx.keys.markDestroyed(row.id, at);
        await tx.audit.record({ type: 'key.destroyed', actor, scope: scope.name, kid: row.kid });
      });
      return { action: 'destroy', kid: row.kid };
    }
  }
}

/**
 * Records each trusted key's state changes (published, activated, retired, expired) in the audit log.
 * States are computed, never stored for use (I2); `last_state` only remembers what was logged.
 */
async function recordTransitions(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  trusted: readonly KeyRecord[],
  now: Date,
  actor: string,
): Promise<void> {
  const last = await ctx.keys.lastStates(scope.name);
  for (const k of trusted) {
    if (k.status !== 'ready') continue;
    const state = effectiveState(k, now);
    if (last.get(k.id) === state) {
      // Another process may have recorded it: the scheduler's in-memory check learns it here.
      ctx.recordedStates.note(k.id, state);
      continue;
    }
    await ctx.store.transaction(async (tx) => {
      await tx.audit.record({
        type: KEY_STATE_EVENTS[state],
        actor,
        scope: scope.name,
        kid: k.kid,
      });
      await tx.keys.setLastState(k.id, state);
    });
    ctx.recordedStates.note(k.id, state);
  }
}

/**
 * Seals the scope's keys made before sealing (after confirming each against its backend), then
 * reloads this process's keys so the decisions below see them. Failures are reported, not thrown.
 */
async function sealLegacy(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  actor: string,
  report: ReconcileReport,
): Promise<void> {
  if (ctx.cache.integrity.refusedIn(scope.name, 'unsealed').length === 0) return;
  try {
    const r = await sealLegacyKeys(ctx, scope, actor);
    for (const kid of r.sealed) report.done.push({ action: 'seal-legacy', kid, detail: 'sealed' });
    for (const x of r.refused) {
      report.errors.push({
        action: 'seal-legacy',
        message: `key ${x.kid}: ${x.message}`,
        code: 'KEY_NOT_USABLE',
      });
    }
    if (r.sealed.length > 0 || r.refused.length > 0) await ctx.cache.refresh(true);
  } catch (e) {
    report.errors.push({ action: 'seal-legacy', message: (e as Error).message, code: errorCode(e) });
    ctx.log.error(
      { scope: scope.name, err: (e as Error).message },
      'sealing keys made before sealing failed',
    );
  }
}

/** Reconciles every configured scope, one after another; never throws. */
export async function reconcileAll(ctx: LifecycleContext, actor = 'scheduler'): Promise<ReconcileReport[]> {
  const reports: ReconcileReport[] = [];
  for (const s of ctx.config.scopes) {
    try {
      reports.push(await reconcileScope(ctx, s.name, actor));
    } catch (e) {
      reports.push({
        scope: s.name,
        ran: false,
        done: [],
        errors: [{ action: 'create', message: (e as Error).message, code: errorCode(e) }],
      });
    }
  }
  return reports;
}

function errorCode(e: unknown): ErrorCode {
  return e instanceof KeywardenError ? e.code : 'INTERNAL';
}
