import type { Logger } from 'pino';
import type { EntityManager } from 'typeorm';
import type { AuditEvent } from '../policy/audit-events';

/**
 * Writes audit events as structured log lines instead of the chain: for runtimes opened without
 * the store-backed log (tests, tools). The daemon and the CLI use StoreAuditLog.
 */
export class LogAuditLog {
  constructor(private readonly log: Logger) {}

  async record(event: AuditEvent): Promise<void> {
    this.log.info({ audit: event }, event.type);
  }

  /** The same, whatever the transaction (a log line cannot be rolled back). */
  async appendIn(_m: EntityManager, event: AuditEvent): Promise<void> {
    await this.record(event);
  }
}
