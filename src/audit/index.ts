import type { RuntimeOptions } from '../main';
import type { KeywardenConfig } from '../policy/scope';
import { LogAuditSink } from './log-audit-sink';
import { storeAuditSinkFactory, type StoreAuditSinkOptions } from './store-audit-sink';

/**
 * The audit sink the daemon and CLI use: the hash-chained log in the store (I7), with signed
 * checkpoints by the audit key. Pass the runtime's clock in `opts` when it is not the system
 * clock (tests with a FakeClock); a fourth `clock` argument from the runtime is honoured too.
 */
export function createStoreAuditSink(
  config: KeywardenConfig,
  opts: StoreAuditSinkOptions = {},
): NonNullable<RuntimeOptions['audit']> {
  return storeAuditSinkFactory(config, opts);
}

export { LogAuditSink };
export { StoreAuditSink, type StoreAuditSinkOptions } from './store-audit-sink';
export { AuditStore, type AuditHead, type SignedMarker } from './audit-store';
export { canonicalJson } from './canonical-json';
export { GENESIS_HASH, recordHash, chainNext, type ChainedRecord, type ChainedContent } from './chain';
export { scrubAuditData } from './scrub';
