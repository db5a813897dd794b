import type { ChainedRecord } from './chain';
import { signStatement } from './signature';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { effectiveState, isPublished } from '../policy/key-state';
import { auditSigner, ensureAuditKey, type AuditContext } from './audit-key';
import { checkpointAudit, PRUNED_TYPE } from './checkpoint';
import { verifyAuditChain } from './verify';

/** Why a record must stay. */
export interface PruneBlock {
  seq: number;
  kid: string | null;
  reason: string;
}

export interface PruneResult {
  /** Records removed (a prefix of the chain). */
  pruned: number;
  /** First seq of the chain now. */
  firstSeq: number | null;
  /** The `audit.pruned` record holding the signed anchor, when anything was removed. */
  anchorSeq: number | null;
  /** The record the prune stopped at because it is evidence about a live or recent key. */
  blockedBy: PruneBlock | null;
}

/** Keys whose records are evidence still: published, or dead for less than the evidence period. */
function evidence(keys: readonly KeyRecord[], now: Date, evidenceSeconds: number) {
  const byKid = new Map<string, string>();
  const byKeyId = new Map<string, string>();
  for (const k of keys) {
    const name = k.kid ?? `(row ${k.id})`;
    let reason: string | null = null;
    if (k.status === 'generating') reason = `key ${name} is being generated`;
    else {
      const state = effectiveState(k, now);
      const endMs = Math.min(k.expiresAt.getTime(), k.revokedAt?.getTime() ?? Infinity);
      if (isPublished(state)) reason = `key ${name} in scope ${k.scope} is still published (${state})`;
      else if (now.getTime() < endMs + evidenceSeconds * 1000) {
        reason = `key ${name} in scope ${k.scope} ${state} at ${new Date(endMs).toISOString()}, less than the evidence period ago`;
      }
    }
    if (!reason) continue;
    if (k.kid) byKid.set(k.kid, reason);
    byKeyId.set(k.id, reason);
  }
  return (r: ChainedRecord): string | null =>
    (r.kid && byKid.get(r.kid)) ||
    (typeof r.data.keyId === 'string' ? (byKeyId.get(r.data.keyId) ?? null) : null);
}

/**
 * Retention (I7): removes the longest prefix of records older than `before` that holds no
 * evidence about a key still published or dead for less than `config.audit.evidencePeriod`,
 * and leaves a signed anchor (`audit.pruned`) so the rest still verifies. Refuses on a broken
 * chain (pruning must not erase the evidence of tampering) and when nothing may go because of
 * evidence (AUDIT_PRUNE_REFUSED, with the blocking record in `details`).
 */
export async function pruneAudit(actx: AuditContext, before: Date, actor: string): Promise<PruneResult> {
  const now = actx.clock.now();
  if (!(before instanceof Date) || Number.isNaN(before.getTime())) {
    throw new KeywardenError('REQUEST_INVALID', '--before must be a date');
  }
  if (before > now) throw new KeywardenError('REQUEST_INVALID', '--before must not be in the future');
  const check = await verifyAuditChain(actx, { online: false });
  if (!check.ok) {
    throw new KeywardenError(
      'AUDIT_CHAIN_BROKEN',
      `refusing to prune a broken chain (${check.break?.kind} at seq ${check.break?.seq}): ${check.break?.message}`,
      { details: check.break },
    );
  }
  const store = actx.auditRecords;
  const first = await store.first();
  if (!first) return { pruned: 0, firstSeq: null, anchorSeq: null, blockedBy: null };
  const isEvidence = evidence(await actx.keys.listAll(), now, actx.config.audit.evidencePeriodSeconds);
  let cut = first.seq;
  let cutPrev: ChainedRecord | null = null;
  let blockedBy: PruneBlock | null = null;
  scan: for (;;) {
    const rows = await store.range(cut, 500);
    if (rows.length === 0) break;
    for (const r of rows) {
      if (r.at >= before) break scan;
      const reason = isEvidence(r);
      if (reason) {
        blockedBy = { seq: r.seq, kid: r.kid, reason };
        break scan;
      }
      cut = r.seq + 1;
      cutPrev = r;
    }
  }
  if (!cutPrev) {
    if (blockedBy) {
      throw new KeywardenError(
        'AUDIT_PRUNE_REFUSED',
        `nothing can be pruned: record ${blockedBy.seq} is evidence (${blockedBy.reason})`,
        { details: blockedBy },
      );
    }
    return { pruned: 0, firstSeq: first.seq, anchorSeq: null, blockedBy: null };
  }
  const signer = await auditSigner(actx, await ensureAuditKey(actx));
  const at = actx.clock.now();
  const prevHash = cutPrev.hash;
  const anchor = await signStatement(signer, 'anchor', {
    firstSeq: cut,
    prevHash,
    before: before.getTime(),
    at: at.getTime(),
  });
  const { pruned, rec } = await store.transaction(async (m) => {
    await store.lock(m);
    const [nowFirst, prev] = [await store.first(m), await store.bySeq(cut - 1, m)];
    if (nowFirst?.seq !== first.seq || prev?.hash !== prevHash) {
      throw new KeywardenError(
        'LOCK_BUSY',
        'the audit log changed while pruning (another prune?); try again',
      );
    }
    const n = await store.deleteBelow(m, cut);
    const appended = await store.append(m, {
      at,
      type: PRUNED_TYPE,
      actor,
      scope: null,
      kid: null,
      data: {
        firstSeq: cut,
        prevHash,
        before: before.toISOString(),
        count: n,
        auditKid: signer.kid,
        anchor,
      },
    });
    return { pruned: n, rec: appended };
  });
  actx.log.info({ audit: { pruned, firstSeq: cut, anchor: rec.seq } }, 'audit log pruned');
  // A fresh checkpoint over the anchor record keeps the signed head current.
  await checkpointAudit(actx, { force: true }).catch((e: unknown) =>
    actx.log.warn({ err: (e as Error).message }, 'checkpoint after prune failed'),
  );
  return { pruned, firstSeq: cut, anchorSeq: rec.seq, blockedBy };
}
