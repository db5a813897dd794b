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
  return {
    name: 'audit checkpoint',
    everyMs: Math.min(CHECKPOINT_CHECK_MS, Math.max(1000, actx.config.audit.checkpointEverySeconds * 1000)),
    atStart: true,
    async run() {
      // SQLite in one process is one connection: statements issued now would run inside whatever
      // transaction another flow has open. The next tick comes soon enough.
      if (actx.auditRecords.connectionBusy()) return;
      try {
        await checkpointAudit(actx);
      } catch (e) {
        actx.log.warn({ err: (e as Error).message }, 'audit checkpoint failed; retried at the next run');
      }
    },
  };
}
