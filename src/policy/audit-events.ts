/**
 * Every audit record type keywarden writes (I7), each documented in docs/audit.md; a test keeps
 * the two in step, as errors.ts does for error codes. A new event is a line here and a row there.
 */
export const AUDIT_EVENT_TYPES = [
  // A key's life (lifecycle: generation, reconcile, revocation).
  'key.generating',
  'key.created',
  'key.generation-failed',
  'key.published',
  'key.activated',
  'key.retired',
  'key.expired',
  'key.revoked',
  'key.destroyed',
  // Integrity of key rows against their backends (docs/security-model.md).
  'key.integrity-failed',
  'key.row-missing',
  'key.sealed',
  'key.seal-refused',
  // API clients (operator actions and the daemon's checks).
  'client.created',
  'client.removed',
  'client.secret-rotated',
  'client.sealed',
  'client.resealed',
  'client.integrity-failed',
  // The token service.
  'sign.activity',
  'access.denied',
  'access.denied-summary',
  // The audit log itself.
  'audit.checkpoint',
  'audit.pruned',
  // Backends and the leak scanner.
  'backend.orphan-found',
  'scan.completed',
  // The daemon's configuration (SIGHUP reload).
  'config.reloaded',
  'config.reload-refused',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** One audit event: a lifecycle transition or an operator/client action. Never a secret. */
export interface AuditEvent {
  type: AuditEventType;
  actor: string;
  scope?: string | null;
  kid?: string | null;
  data?: Record<string, unknown>;
}

/** The record of a key's computed state change (reconcile). */
export const KEY_STATE_EVENTS = {
  pending: 'key.published',
  active: 'key.activated',
  retired: 'key.retired',
  expired: 'key.expired',
  revoked: 'key.revoked',
} as const satisfies Record<string, AuditEventType>;
