import type { Logger } from 'pino';
import type { DataSource, EntityManager } from 'typeorm';
import { AUDIT_EVENT_TYPES, type AuditEvent } from '../policy/audit-events';
import { KeywardenError } from '../policy/errors';
import { systemClock, type Clock } from '../policy/clock';
import { AuditStore } from './audit-store';
import { scrubAuditData } from './scrub';

const KNOWN_TYPES: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES);

const clip = (s: string, n: number): string => (s.length > n ? s.slice(0, n) : s);

/**
 * The hash-chained, store-backed audit log (I7), append-only: `record` appends in a transaction
 * of its own, `appendIn` inside the caller's (the store's transactions use it, so a state change
 * and its record commit or roll back together). Signed checkpoints are a scheduled job of the
 * daemon (src/audit/jobs.ts), not something a write sets off.
 */
export class StoreAuditLog {
  readonly store: AuditStore;

  constructor(
    private readonly ds: DataSource,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.store = new AuditStore(ds);
  }

  async record(event: AuditEvent): Promise<void> {
    await this.ds.transaction((m) => this.appendIn(m, event));
  }

  /** Appends inside the transaction `m`. */
  async appendIn(m: EntityManager, event: AuditEvent): Promise<void> {
    // The type is checked at compile time; this catches a cast or a plain-JavaScript caller, so a
    // record the docs and `audit tail --type` know nothing about is never written.
    if (!KNOWN_TYPES.has(event.type)) {
      throw new KeywardenError('INTERNAL', `audit event type "${String(event.type)}" is not catalogued`);
    }
    const content = {
      at: this.clock.now(),
      type: clip(String(event.type), 64),
      actor: clip(String(event.actor), 200),
      scope: event.scope == null ? null : clip(String(event.scope), 64),
      kid: event.kid == null ? null : clip(String(event.kid), 64),
      data: scrubAuditData(event.data),
    };
    await this.store.append(m, content);
    this.log.debug({ audit: { type: content.type, scope: content.scope, kid: content.kid } }, 'audit record');
  }
}
