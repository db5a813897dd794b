import type { DataSource } from 'typeorm';
import { AuditStore } from '../audit/audit-store';
import type { ChainedRecord } from '../audit/chain';
import { KeywardenError } from '../policy/errors';
import type { LifecycleContext } from './context';

export interface AuditTailFilter {
  scope?: string;
  kid?: string;
  type?: string;
  /** Newest N records (1..10000, default 20). */
  limit?: number;
}

/** The newest records matching the filter, oldest first (`keywarden audit tail`). */
export async function tailAudit(
  ctx: Pick<LifecycleContext, 'ds'>,
  filter: AuditTailFilter = {},
): Promise<ChainedRecord[]> {
  const limit = filter.limit ?? 20;
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
    throw new KeywardenError('REQUEST_INVALID', '--limit must be an integer 1..10000');
  }
  return new AuditStore(ctx.ds).tail({ ...filter, limit });
}

/**
 * Records currently in the chain (head seq - first seq + 1; a pruned prefix is not counted).
 * Two primary-key lookups, cheap enough for every metrics scrape.
 */
export async function auditChainLength(ds: DataSource): Promise<number> {
  const store = new AuditStore(ds);
  const head = await store.head();
  if (head.seq === 0) return 0;
  const first = await store.first();
  return first ? head.seq - first.seq + 1 : 0;
}

/** The chain head (seq and hash of the last record): what an external witness should keep. */
export async function auditChainHead(ds: DataSource): Promise<{ seq: number; hash: string }> {
  const head = await new AuditStore(ds).head();
  return { seq: head.seq, hash: head.hash };
}
