import type { Logger } from 'pino';
import type { AuditEvent, AuditSink } from '../lifecycle/audit-sink';

/**
 * Writes audit events as structured log lines. Used by one-shot commands that must not
 * write to the store (e.g. `plan`) and in tests; the daemon and CLI use the hash-chained
 * store-backed log.
 */
export class LogAuditSink implements AuditSink {
  constructor(private readonly log: Logger) {}
  async record(event: AuditEvent): Promise<void> {
    this.log.info({ audit: event }, event.type);
  }
}
