import { KeywardenError, type ErrorCode } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { effectiveState } from '../policy/key-state';
import { nextActions, type ReconcileAction } from '../policy/next-actions';
import type { ScopeConfig } from '../policy/scope';
import { abandon, completeKey, generateKey } from './generate-key';
import { requireScope, type LifecycleContext } from './context';

/** What one reconcile pass of one scope did. */
export interface ReconcileReport {
  scope: string;
  /** False when another process held the scope lock (it is reconciling instead). */
  ran: boolean;
  done: { action: ReconcileAction['kind']; kid?: string | null; detail?: string }[];
  errors: { action: ReconcileAction['kind']; message: string; code: ErrorCode }[];
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
    let keys = await ctx.keys.listByScope(scope.name);
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
      keys = await ctx.keys.listByScope(scope.name);
      actions = nextActions(scope.policy, keys, now).filter((a) => a.kind !== 'resolve-generating');
    }
    for (const action of actions) await run(action);
    await recordTransitions(ctx, scope, now, actor);
  });
  if (outcome.ran && report.done.length > 0) await ctx.cache.refresh(true);
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
      const backend = await ctx.backend(row.backendRef.backend);
      if (await backend.exists(row.backendRef)) {
        const jwk = await backend.publicKey(row.backendRef, row.alg);
        const key = await completeKey(ctx, row, row.backendRef, jwk, actor, 'recovered after interruption');
        return { action: 'resolve-generating', kid: key.kid, detail: 'completed' };
      }
      await abandon(ctx, backend, row, actor, new Error('interrupted before the backend created the key'));
      return { action: 'resolve-generating', kid: null, detail: 'removed' };
    }
    case 'destroy': {
      const row = keys.find((k) => k.id === action.keyId) as KeyRecord;
      const backend = await ctx.backend(row.backendRef.backend);
      await backend.destroy(row.backendRef);
      const at = ctx.clock.now();
      await ctx.ds.transaction(async (m) => {
        await ctx.keys.markDestroyed(row.id, at, m);
        await ctx.audit.record({ type: 'key.destroyed', actor, scope: scope.name, kid: row.kid }, m);
      });
      return { action: 'destroy', kid: row.kid };
    }
  }
}

/**
 * Records each key's state changes (published, activated, retired, expired) in the audit log.
 * States are computed, never stored for use (I2); `last_state` only remembers what was logged.
 */
async function recordTransitions(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  now: Date,
  actor: string,
): Promise<void> {
  const keys = await ctx.keys.listByScope(scope.name);
  const last = await ctx.keys.lastStates(scope.name);
  for (const k of keys) {
    if (k.status !== 'ready') continue;
    const state = effectiveState(k, now);
    if (last.get(k.id) === state) continue;
    await ctx.ds.transaction(async (m) => {
      await ctx.audit.record(
        {
          type: `key.${state === 'pending' ? 'published' : state === 'active' ? 'activated' : state}`,
          actor,
          scope: scope.name,
          kid: k.kid,
        },
        m,
      );
      await ctx.keys.setLastState(k.id, state, m);
    });
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
