import type { EntityManager } from 'typeorm';

/** One audit event: a lifecycle transition or an operator/client action. Never a secret. */
export interface AuditEvent {
  type: string;
  actor: string;
  scope?: string | null;
  kid?: string | null;
  data?: Record<string, unknown>;
}

/**
 * Where lifecycle code records what it did (I7). Implementations append inside the caller's
 * transaction when given its EntityManager, so a state change and its record commit together.
 */
export interface AuditSink {
  record(event: AuditEvent, manager?: EntityManager): Promise<void>;
}
