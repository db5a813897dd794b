/**
 * The audit log's home (I7): the append-only log (StoreAuditLog), its persistence (AuditStore),
 * the hash chain and signed statements, and the audit use cases (checkpoint, verify, prune, tail,
 * request activity) and jobs. The lifecycle facade (src/lifecycle/index.ts) is how adapters reach them.
 */
export { StoreAuditLog } from './audit-log';
export { LogAuditLog } from './log-audit-log';
export { AuditStore, type AuditHead, type SignedMarker } from './audit-store';
export { GENESIS_HASH, recordHash, chainNext, type ChainedRecord, type ChainedContent } from './chain';
export { scrubAuditData } from './scrub';
