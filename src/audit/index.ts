import type { RuntimeOptions } from '../main';
import type { KeywardenConfig } from '../policy/scope';
import { LogAuditSink } from './log-audit-sink';

/**
 * The audit sink the daemon and CLI use. Until the hash-chained audit table lands, events
 * are written as structured log lines (see LogAuditSink).
 */
export function createStoreAuditSink(_config: KeywardenConfig): NonNullable<RuntimeOptions['audit']> {
  return (_ds, _backend, log) => new LogAuditSink(log);
}

export { LogAuditSink };
