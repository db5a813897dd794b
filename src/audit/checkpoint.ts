import type { AuditHead, AuditStore } from './audit-store';
import type { ChainedRecord } from './chain';
import { signStatement } from './signature';
import { effectiveState } from '../policy/key-state';
import {
  auditBackendName,
  auditSigner,
  destroyRetiredAuditKeys,
  ensureAuditKey,
  type AuditContext,
} from './audit-key';
import { AUDIT_ACTOR, AUDIT_SCOPE } from '../policy/audit-key';
import { auditKeyNeededByClients } from '../lifecycle/client-seals';

/** Record types the audit machinery writes. */
export const CHECKPOINT_TYPE = 'audit.checkpoint';
export const PRUNED_TYPE = 'audit.pruned';

/** What a checkpoint record's `data` holds. */
export interface CheckpointData {
  /** The record the signature vouches for: every record up to it is fixed by the hash chain. */
  covers: { seq: number; hash: string };
  auditKid: string;
  /** Flattened JWS over `{seq, hash, at}` (`at` = this record's `at` in epoch ms). */
  signature: { protected: string; payload: string; signature: string };
}

export interface CheckpointStatus {
  head: AuditHead;
  lastCheckpoint: ChainedRecord | null;
  /** Records after the latest checkpoint: not yet covered by any signature. */
  uncovered: number;
  due: boolean;
  reason: string;
}

/** Is a checkpoint due (N records or M seconds since the first uncovered record)? */
export async function checkpointStatus(
  actx: Pick<AuditContext, 'auditRecords' | 'clock' | 'config'>,
): Promise<CheckpointStatus> {
  const store = actx.auditRecords;
  const head = await store.head();
  const lastCheckpoint = await store.latestOfType(CHECKPOINT_TYPE);
  const after = lastCheckpoint?.seq ?? 0;
  const uncovered = await store.countAfter(after);
  const base = { head, lastCheckpoint, uncovered };
  if (uncovered === 0) return { ...base, due: false, reason: 'every record is covered' };
  const { checkpointEveryRecords, checkpointEverySeconds } = actx.config.audit;
  if (uncovered >= checkpointEveryRecords) {
    return { ...base, due: true, reason: `${uncovered} records since the last checkpoint` };
  }
  const oldest = (await store.range(after + 1, 1))[0];
  const ageMs = oldest ? actx.clock.now().getTime() - oldest.at.getTime() : 0;
  if (ageMs >= checkpointEverySeconds * 1000) {
    return { ...base, due: true, reason: `oldest uncovered record is ${Math.round(ageMs / 1000)} s old` };
  }
  return { ...base, due: false, reason: `${uncovered} uncovered records, not due yet` };
}

export interface CheckpointResult {
  written: boolean;
  reason: string;
  /** The checkpoint record, when one was written. */
  seq?: number;
  covers?: { seq: number; hash: string };
  kid?: string;
}

/**
 * Writes a signed checkpoint when one is due (or `force` and anything is uncovered), then the
 * signed head marker over it, then destroys retired audit keys. The HSM signs outside any
 * transaction; the append re-checks under the chain lock that no other process covered the
 * same head meanwhile. Runs from the scheduled checkpoint job (audit/jobs.ts) and from
 * `audit checkpoint`, never in the token sign path.
 */
export async function checkpointAudit(
  actx: AuditContext,
  opts: { force?: boolean } = {},
): Promise<CheckpointResult> {
  if (!auditBackendName(actx.config)) return { written: false, reason: 'no audit key backend configured' };
  const store = actx.auditRecords;
  const status = await checkpointStatus(actx);
  if (!status.due && !(opts.force && status.uncovered > 0)) {
    await repairMarker(actx, store, status);
    return { written: false, reason: status.reason };
  }
  const key = await ensureAuditKey(actx);
  const signer = await auditSigner(actx, key);
  // Read the head after a possible key generation, whose records this checkpoint then covers.
  const head = await store.head();
  const at = actx.clock.now();
  const signature = await signStatement(signer, 'checkpoint', {
    seq: head.seq,
    hash: head.hash,
    at: at.getTime(),
  });
  const data: CheckpointData = {
    covers: { seq: head.seq, hash: head.hash },
    auditKid: signer.kid,
    signature,
  };
  const rec = await store.transaction(async (m) => {
    const latest = await store.latestOfType(CHECKPOINT_TYPE, m);
    const latestCovers = (latest?.data as Partial<CheckpointData> | undefined)?.covers?.seq ?? 0;
    if (latest && latestCovers >= head.seq) return null;
    return store.append(m, {
      at,
      type: CHECKPOINT_TYPE,
      actor: AUDIT_ACTOR,
      scope: null,
      kid: null,
      data: data as unknown as Record<string, unknown>,
    });
  });
  if (!rec) return { written: false, reason: 'another process checkpointed the same head' };
  await writeMarker(actx, store, rec, signer.kid);
  // Never a key that still vouches for API clients the daemon has not re-sealed yet.
  await destroyRetiredAuditKeys(actx, signer.kid, (k) => auditKeyNeededByClients(actx, k));
  actx.log.info({ audit: { checkpoint: rec.seq, covers: data.covers, kid: signer.kid } }, 'audit checkpoint');
  return { written: true, reason: status.reason, seq: rec.seq, covers: data.covers, kid: signer.kid };
}

/** Signs the head marker over a checkpoint record and stores it unless a newer one exists. */
async function writeMarker(
  actx: AuditContext,
  store: AuditStore,
  checkpoint: ChainedRecord,
  kid: string,
): Promise<void> {
  const keys = await actx.keys.listByScope(AUDIT_SCOPE);
  const key = keys.find((k) => k.kid === kid);
  // A key past its signing window must not sign anything, the marker included.
  if (!key || effectiveState(key, actx.clock.now()) !== 'active') return;
  const signer = await auditSigner(actx, key);
  const marker = await signStatement(signer, 'head', {
    seq: checkpoint.seq,
    hash: checkpoint.hash,
    at: actx.clock.now().getTime(),
  });
  await store.setMarker(marker, checkpoint.seq);
}

/** A crash between a checkpoint and its marker leaves an old marker: sign the latest again. */
async function repairMarker(actx: AuditContext, store: AuditStore, status: CheckpointStatus): Promise<void> {
  const cp = status.lastCheckpoint;
  if (!cp || (status.head.markerSeq !== null && status.head.markerSeq >= cp.seq)) return;
  const kid = (cp.data as Partial<CheckpointData>).auditKid;
  if (typeof kid !== 'string') return;
  try {
    await writeMarker(actx, store, cp, kid);
  } catch (e) {
    actx.log.warn({ err: (e as Error).message }, 're-signing the audit head marker failed');
  }
}
