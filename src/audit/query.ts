import type { AuditStore } from './audit-store';
import type { ChainedRecord } from './chain';
import { KeywardenError } from '../policy/errors';

export interface AuditTailFilter {
  scope?: string;
  kid?: string;
  type?: string;
  /** Newest N records (1..10000, default 20). */
  limit?: number;
}

/** The newest records matching the filter, oldest first (`keywarden audit tail`). */
export async function tailAudit(
  ctx: { auditRecords: AuditStore },
  filter: AuditTailFilter = {},
): Promise<ChainedRecord[]> {
  const limit = filter.limit ?? 20;
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
    throw new KeywardenError('REQUEST_INVALID', '--limit must be an integer 1..10000');
  }
  return ctx.auditRecords.tail({ ...filter, limit });
}

/**
 * Records currently in the chain (head seq - first seq + 1; a pruned prefix is not counted).
 * Two primary-key lookups, cheap enough for every metrics scrape.
 */
export async function auditChainLength(ctx: { auditRecords: AuditStore }): Promise<number> {
  const store = ctx.auditRecords;
  const head = await store.head();
  if (head.seq === 0) return 0;
  const first = await store.first();
  return first ? head.seq - first.seq + 1 : 0;
}
