import type { PeriodicJob } from '../lifecycle/ports';
import type { AuditContext } from './audit-key';
import { checkpointAudit } from './checkpoint';

/** How often the daemon looks whether a checkpoint is due (a few queries when it is not). */
const CHECKPOINT_CHECK_MS = 5_000;

/**
 * The signed checkpoint as a scheduled job (SPIRE runs its prune job beside its rotator): every
 * few seconds the daemon's scheduling process writes a checkpoint when one is due (N records, or
 * the oldest uncovered record M seconds old), renews the audit key before it stops signing and
 * destroys retired audit keys. Records written by one-shot commands are covered at its next run.
 */
export function auditCheckpointJob(actx: AuditContext): PeriodicJob {
  const everyMs = Math.max(1000, actx.config.audit.checkpointEverySeconds * 1000);
  // After a failure (the audit key's backend down, say) the next attempt waits this long, as the
  // sink's retry did before checkpoints were a job: one warning a minute at most, not one a tick.
  const retryMs = Math.min(everyMs, 60_000);
  let retryAt = 0;
  return {
    name: 'audit checkpoint',
    everyMs: Math.min(CHECKPOINT_CHECK_MS, everyMs),
    atStart: true,
    async run() {
      if (actx.clock.now().getTime() < retryAt) return;
      // SQLite in one process is one connection: statements issued now would run inside whatever
      // transaction another flow has open. The next tick comes soon enough.
      if (actx.auditRecords.connectionBusy()) return;
      try {
        await checkpointAudit(actx);
        retryAt = 0;
      } catch (e) {
        retryAt = actx.clock.now().getTime() + retryMs;
        actx.log.warn(
          { err: (e as Error).message, retryInSeconds: retryMs / 1000 },
          'audit checkpoint failed; retried later',
        );
      }
    },
  };
}
