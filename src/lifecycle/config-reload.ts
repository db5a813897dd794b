import type { ConfigReloadOutcome } from '../policy/config-changes';
import type { LifecycleContext } from './context';

/**
 * Records a reload in the audit log (I7: a reload changes which scopes exist and how their next
 * keys live, an administrative act), applied or refused. Audit trouble is logged, never thrown:
 * the reload itself has already happened (or not) by then.
 */
export async function recordConfigReload(
  ctx: Pick<LifecycleContext, 'audit' | 'log'>,
  outcome: ConfigReloadOutcome,
  actor: string,
): Promise<void> {
  try {
    if (outcome.applied) {
      const c = outcome.changes;
      await ctx.audit.record({
        type: 'config.reloaded',
        actor,
        data: {
          sha256: outcome.sha256,
          scopesAdded: c.scopesAdded,
          scopesRemoved: c.scopesRemoved,
          scopesChanged: c.scopesChanged,
          serverChanged: c.serverChanged,
        },
      });
    } else {
      await ctx.audit.record({
        type: 'config.reload-refused',
        actor,
        data: { sha256: outcome.sha256, problems: [...outcome.problems] },
      });
    }
  } catch (e) {
    ctx.log.error({ err: (e as Error).message }, 'cannot record the config reload in the audit log');
  }
}
