/**
 * The audit log's home (I7): the append-only log (StoreAuditLog), its persistence (AuditStore),
 * the hash chain and signed statements, and the audit use cases (checkpoint, verify, prune, tail,
 * request activity) and jobs. The lifecycle facade (src/lifecycle/index.ts) is how adapters reach them.
 */
import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import { systemClock, type Clock } from '../policy/clock';
import { StoreAuditLog } from './audit-log';

/**
 * The audit log the daemon and CLI use: the hash-chained log in the store, append-only. The
 * composition root calls the returned function once the store is open; pass `clock` when it is
 * not the runtime's (tests). The config argument is kept for callers that have one at hand.
 */
export function createStoreAuditSink(
  _config?: unknown,
  opts: { clock?: Clock } = {},
): (ds: DataSource, log: Logger, clock: Clock) => StoreAuditLog {
  return (ds, log, clock) => new StoreAuditLog(ds, log, opts.clock ?? clock ?? systemClock);
}

export { StoreAuditLog } from './audit-log';
export { LogAuditLog } from './log-audit-log';
export { AuditStore, type AuditHead, type SignedMarker } from './audit-store';
export { GENESIS_HASH, recordHash, chainNext, type ChainedRecord, type ChainedContent } from './chain';
export { scrubAuditData } from './scrub';
