import type { KeyRecord } from '../policy/key';
import type { KeyRefusal } from '../policy/key-integrity';
import { effectiveState } from '../policy/key-state';
import type { LifecycleContext } from './context';
import type { MissingRow } from './key-integrity';

/** How far a row is trusted (`keys list`, `keys verify`). */
export type RowTrust =
  /** Live and confirmed by its backend (sealed, present, the same public key). */
  | 'trusted'
  /** Revoked or expired by its own times: it can only refuse tokens, so it needs no confirmation. */
  | 'dead'
  /** Refused by the integrity check: see the refusal for why. */
  | 'refused'
  /** Not checked: still generating, or of a scope this config does not have. */
  | 'unchecked';

export interface KeyVerifyReport {
  /** True when no row is refused and no backend key lacks its row. */
  ok: boolean;
  checkedAt: string;
  trust: Map<string, RowTrust>;
  refused: KeyRefusal[];
  missingRows: MissingRow[];
}

/**
 * Checks every key row against its backend now (`keywarden keys verify`, and what `keys list`
 * shows): the same integrity check every process runs before it uses a row, forced afresh.
 */
export async function verifyKeyRows(
  ctx: Pick<LifecycleContext, 'cache' | 'keys'>,
): Promise<KeyVerifyReport & { rows: KeyRecord[] }> {
  await ctx.cache.refresh(true);
  const report = ctx.cache.integrity.report;
  const rows = await ctx.keys.listAll();
  if (!report) throw new Error('the integrity check has not run');
  const usable = new Map(report.usable.map((k) => [k.id, k]));
  const refused = new Set(report.refused.map((r) => r.keyId));
  const trust = new Map<string, RowTrust>();
  for (const k of rows) {
    const checked = usable.get(k.id);
    let t: RowTrust = 'unchecked';
    if (refused.has(k.id)) t = 'refused';
    else if (checked) {
      const state = effectiveState(checked, report.checkedAt);
      t = state === 'revoked' || state === 'expired' ? 'dead' : 'trusted';
    }
    trust.set(k.id, t);
  }
  return {
    ok: report.refused.length === 0 && report.missingRows.length === 0,
    checkedAt: report.checkedAt.toISOString(),
    trust,
    refused: report.refused,
    missingRows: report.missingRows,
    rows,
  };
}
