import type { AuditStore, SignedMarker } from './audit-store';
import { GENESIS_HASH, recordHash, type ChainedRecord } from './chain';
import { statementKid, verifyStatement, type StatementKind } from './signature';
import type { KeyRecord } from '../policy/key';
import type { AuditContext } from './audit-key';
import { AUDIT_SCOPE } from '../policy/audit-key';
import { CHECKPOINT_TYPE, PRUNED_TYPE, type CheckpointData } from './checkpoint';
import { thumbprint } from '../policy/thumbprint';

/** How the chain was found broken. */
export type AuditBreakKind =
  /** A record's content no longer matches its hash. */
  | 'edited'
  /** Records are missing: a seq gap, or records removed and the rest renumbered. */
  | 'deleted'
  /** A record sits at another position than the one it was written at (swapped, moved). */
  | 'reordered'
  /** A record does not link to its predecessor: something before it was replaced or re-linked. */
  | 'relinked'
  /** A checkpoint, head marker or anchor signature does not verify. */
  | 'checkpoint-signature'
  /** A valid signature vouches for a hash the chain no longer has: records were rewritten. */
  | 'checkpoint-mismatch'
  /** The signing key is unknown, outside its signing window, or not the one in the HSM. */
  | 'checkpoint-key'
  /** Records at the end are missing (head row, signed head marker or a witness says more existed). */
  | 'truncated'
  /** The first records are gone without a valid signed prune anchor. */
  | 'anchor';

export interface AuditBreak {
  kind: AuditBreakKind;
  /** Position of the first break (the seq where the chain stops being trustworthy). */
  seq: number;
  message: string;
}

export type TrustStatus = 'hsm-confirmed' | 'pinned' | 'unconfirmed' | 'none';

export interface AuditVerifyReport {
  ok: boolean;
  /** Records walked. */
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** Seq the head row names. */
  headSeq: number;
  checkpoints: number;
  latestCheckpoint: { seq: number; coversSeq: number; at: string; kid: string } | null;
  /** Records after the latest checkpoint, covered by no signature yet. */
  uncovered: number;
  /** Set when the chain starts after a prune: records below this seq were pruned. */
  prunedBelow: number | null;
  /** Whether the key behind the latest signature is known to be the real audit key. */
  trust: { kid: string | null; status: TrustStatus; detail: string };
  break: AuditBreak | null;
  warnings: string[];
}

export interface VerifyAuditOptions {
  /** Confirm the latest signer against the key in the HSM (needs the backend). Default true. */
  online?: boolean;
  /** Audit kids the operator trusts without asking the HSM (recorded out of band). */
  trustKids?: readonly string[];
  /** Externally kept (seq, hash) pairs, e.g. from shipped `audit checkpoint` log lines. */
  witnesses?: readonly { seq: number; hash: string }[];
  batchSize?: number;
}

/** How far around a failing record the classification looks for where it belongs. */
const CLASSIFY_WINDOW = 8;

class Broken extends Error {
  constructor(readonly info: AuditBreak) {
    super(info.message);
  }
}

const fail = (kind: AuditBreakKind, seq: number, message: string): never => {
  throw new Broken({ kind, seq, message });
};

/** Audit keys by kid, each checked once: its stored JWK must hash to its kid. */
class AuditKeys {
  private readonly byKid = new Map<string, KeyRecord>();
  private readonly checked = new Map<string, boolean>();

  constructor(keys: readonly KeyRecord[]) {
    for (const k of keys) if (k.kid && k.publicJwk && k.status === 'ready') this.byKid.set(k.kid, k);
  }

  get(kid: string): KeyRecord | undefined {
    return this.byKid.get(kid);
  }

  /** Verifies a statement and that its key could sign at `at`; throws a Broken at `seq`. */
  async verify(
    kind: StatementKind,
    jws: SignedMarker | undefined,
    at: Date,
    seq: number,
  ): Promise<{ kid: string; statement: Record<string, unknown> }> {
    const what = kind === 'head' ? 'head marker' : kind;
    const kid = jws ? statementKid(jws) : null;
    if (!jws || !kid)
      return fail('checkpoint-signature', seq, `${what} at seq ${seq} carries no readable signature`);
    const key = this.byKid.get(kid);
    if (!key)
      return fail('checkpoint-key', seq, `${what} at seq ${seq} is signed by unknown audit key ${kid}`);
    let ok = this.checked.get(kid);
    if (ok === undefined) {
      ok = (await thumbprint(key.publicJwk!).catch(() => '')) === kid;
      this.checked.set(kid, ok);
    }
    if (!ok)
      return fail('checkpoint-key', seq, `audit key ${kid}: stored public key does not hash to its kid`);
    const t = at.getTime();
    if (
      t < key.activateAt.getTime() ||
      t >= key.retireAt.getTime() ||
      (key.revokedAt && t >= key.revokedAt.getTime())
    ) {
      return fail(
        'checkpoint-key',
        seq,
        `${what} at seq ${seq} dated ${at.toISOString()} is outside audit key ${kid}'s signing window`,
      );
    }
    const res = await verifyStatement(kind, jws, key.publicJwk!, key.alg);
    if (!res.ok) return fail('checkpoint-signature', seq, `${what} at seq ${seq}: ${res.reason}`);
    if (res.kid !== kid) return fail('checkpoint-signature', seq, `${what} at seq ${seq}: kid mismatch`);
    return { kid, statement: res.statement };
  }
}

/**
 * Walks the whole chain and every signature and reports the FIRST break with its position and
 * kind (docs/audit.md lists what can and cannot be detected). Reads only; never throws for a
 * broken chain (the report says so), only for a store that cannot be read.
 */
export async function verifyAuditChain(
  actx: Pick<AuditContext, 'auditRecords' | 'keys' | 'backend' | 'log'>,
  opts: VerifyAuditOptions = {},
): Promise<AuditVerifyReport> {
  const store = actx.auditRecords;
  const head = await store.head();
  const keys = new AuditKeys(await actx.keys.listByScope(AUDIT_SCOPE));
  const report: AuditVerifyReport = {
    ok: true,
    records: 0,
    firstSeq: null,
    lastSeq: null,
    headSeq: head.seq,
    checkpoints: 0,
    latestCheckpoint: null,
    uncovered: 0,
    prunedBelow: null,
    trust: { kid: null, status: 'none', detail: 'no checkpoint yet: the chain is only self-consistent' },
    break: null,
    warnings: [],
  };
  let latestSignerKid: string | null = null;
  try {
    const first = await store.first();
    if (!first) {
      if (head.seq > 0) fail('truncated', 1, `the table is empty but the head row names seq ${head.seq}`);
      return report;
    }
    report.firstSeq = first.seq;
    // Where the walk starts: genesis, or the signed anchor a prune left.
    let prevHash = GENESIS_HASH;
    if (first.seq !== 1) {
      const pruned = await store.latestOfType(PRUNED_TYPE);
      const anchor = pruned?.data.anchor as SignedMarker | undefined;
      if (!pruned || !anchor) {
        fail(
          'deleted',
          first.seq - 1,
          `records before seq ${first.seq} are gone and no prune anchor explains it`,
        );
      }
      const { statement } = await keys
        .verify('anchor', anchor, pruned!.at, pruned!.seq)
        .catch((e: unknown) => {
          if (e instanceof Broken)
            fail('anchor', first.seq, `prune anchor (seq ${pruned!.seq}): ${e.info.message}`);
          throw e;
        });
      if (statement.firstSeq !== first.seq) {
        fail(
          'deleted',
          first.seq - 1,
          `the signed prune anchor starts the chain at seq ${String(statement.firstSeq)}, but it starts at ${first.seq}`,
        );
      }
      prevHash = String(statement.prevHash);
      report.prunedBelow = first.seq;
    }
    let expected = first.seq;
    const recent = new Map<number, string>();
    const batch = opts.batchSize ?? 500;
    let lastGoodCheckpointCovers = first.seq - 1;
    let last: ChainedRecord | null = null;
    for (;;) {
      const rows = await store.range(expected, batch);
      if (rows.length === 0) break;
      for (const r of rows) {
        if (r.seq !== expected) {
          fail(
            'deleted',
            expected,
            r.seq - expected === 1
              ? `record seq ${expected} is missing`
              : `records seq ${expected}..${r.seq - 1} are missing`,
          );
        }
        if (recordHash(r) !== r.hash) await classify(store, r);
        if (r.prevHash !== prevHash) {
          fail(
            'relinked',
            r.seq,
            `record ${r.seq} does not link to record ${r.seq - 1}: a record before it was replaced, or removed and the chain re-linked`,
          );
        }
        if (r.type === CHECKPOINT_TYPE) {
          const d = r.data as Partial<CheckpointData>;
          const { kid, statement } = await keys.verify('checkpoint', d.signature, r.at, r.seq);
          const seq = Number(statement.seq);
          const claimed = String(statement.hash);
          if (
            statement.at !== r.at.getTime() ||
            d.covers?.seq !== seq ||
            d.covers?.hash !== claimed ||
            seq >= r.seq
          ) {
            fail(
              'checkpoint-mismatch',
              r.seq,
              `checkpoint ${r.seq}: its record does not match what was signed`,
            );
          }
          const actual = seq === r.seq - 1 ? prevHash : (recent.get(seq) ?? (await store.bySeq(seq))?.hash);
          if (actual === undefined && seq < first.seq) {
            report.warnings.push(`checkpoint ${r.seq} covers pruned seq ${seq}`);
          } else if (actual !== claimed) {
            fail(
              'checkpoint-mismatch',
              r.seq,
              `checkpoint ${r.seq} vouches for hash ${claimed.slice(0, 12)}… at seq ${seq}, the chain has ${String(actual).slice(0, 12)}…: records ${lastGoodCheckpointCovers + 1}..${seq} were rewritten`,
            );
          }
          lastGoodCheckpointCovers = seq;
          report.checkpoints += 1;
          report.latestCheckpoint = { seq: r.seq, coversSeq: seq, at: r.at.toISOString(), kid };
          latestSignerKid = kid;
        } else if (r.type === PRUNED_TYPE) {
          await keys.verify('anchor', r.data.anchor as SignedMarker | undefined, r.at, r.seq);
        }
        recent.set(r.seq, r.hash);
        if (recent.size > 2048) recent.delete(r.seq - 2048);
        prevHash = r.hash;
        expected = r.seq + 1;
        report.records += 1;
        last = r;
      }
    }
    const end = last!;
    report.lastSeq = end.seq;
    report.uncovered = report.latestCheckpoint ? end.seq - report.latestCheckpoint.seq : report.records;
    // The tail: the head row moves with every append; the marker only with signatures.
    if (head.seq > end.seq)
      fail(
        'truncated',
        end.seq + 1,
        `the chain ends at seq ${end.seq} but the head row names seq ${head.seq}`,
      );
    if (head.seq < end.seq || head.hash !== end.hash) {
      fail(
        head.seq < end.seq ? 'relinked' : 'edited',
        end.seq,
        head.seq < end.seq
          ? `records after seq ${head.seq} were added outside the audit log (the head row names seq ${head.seq})`
          : `the last record (seq ${end.seq}) was replaced: its hash differs from the head row's`,
      );
    }
    if (head.marker) {
      const { kid, statement } = await keys.verify(
        'head',
        head.marker,
        new Date(statementAt(head.marker)),
        head.markerSeq ?? end.seq,
      );
      const mseq = Number(statement.seq);
      if (mseq > end.seq)
        fail(
          'truncated',
          end.seq + 1,
          `the signed head marker vouches for seq ${mseq}, the chain ends at seq ${end.seq}`,
        );
      const actual = mseq >= first.seq ? (recent.get(mseq) ?? (await store.bySeq(mseq))?.hash) : undefined;
      if (actual !== undefined && actual !== statement.hash) {
        fail('checkpoint-mismatch', mseq, `the signed head marker vouches for another hash at seq ${mseq}`);
      }
      if (report.latestCheckpoint && mseq < report.latestCheckpoint.seq) {
        report.warnings.push(
          `the head marker (seq ${mseq}) is older than the latest checkpoint (seq ${report.latestCheckpoint.seq})`,
        );
      }
      latestSignerKid = kid;
    } else if (report.checkpoints > 0) {
      report.warnings.push(
        'no signed head marker: truncation after the latest checkpoint is detected only by the head row',
      );
    }
    for (const w of opts.witnesses ?? []) {
      if (w.seq > end.seq)
        fail('truncated', end.seq + 1, `witness seq ${w.seq} is past the end of the chain (seq ${end.seq})`);
      if (w.seq < first.seq) {
        report.warnings.push(`witness seq ${w.seq} was pruned`);
        continue;
      }
      const h = (await store.bySeq(w.seq))?.hash;
      if (h !== w.hash)
        fail('checkpoint-mismatch', w.seq, `witnessed hash for seq ${w.seq} differs from the chain`);
    }
    if (report.uncovered > 0) {
      report.warnings.push(
        `${report.uncovered} record(s) after the latest checkpoint are not yet covered by a signature`,
      );
    }
    report.trust = await confirmTrust(
      actx,
      keys,
      latestSignerKid,
      report.latestCheckpoint?.seq ?? end.seq,
      opts,
    );
  } catch (e) {
    if (!(e instanceof Broken)) throw e;
    report.ok = false;
    report.break = e.info;
  }
  return report;
}

/** `at` (epoch ms) inside a signed statement's payload, unverified (for the window check). */
function statementAt(jws: SignedMarker): number {
  try {
    const p = JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as { at?: unknown };
    return typeof p.at === 'number' ? p.at : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Names the break at `r` (whose hash does not match its content): was it written at another
 * position (reordered, or later records renumbered after a deletion) or edited in place?
 */
async function classify(store: AuditStore, r: ChainedRecord): Promise<never> {
  const hashesAs = (x: ChainedRecord, seq: number) => recordHash({ ...x, seq }) === x.hash;
  let belongsAt: number | null = null;
  for (let d = 1; d <= CLASSIFY_WINDOW && belongsAt === null; d++) {
    if (hashesAs(r, r.seq + d)) belongsAt = r.seq + d;
    else if (r.seq - d >= 1 && hashesAs(r, r.seq - d)) belongsAt = r.seq - d;
  }
  if (belongsAt === null)
    return fail('edited', r.seq, `record ${r.seq} was modified: its content no longer matches its hash`);
  const around = await store.range(Math.max(1, r.seq - CLASSIFY_WINDOW), 2 * CLASSIFY_WINDOW + 1);
  const owner = around.find((x) => x.seq !== r.seq && hashesAs(x, r.seq));
  if (owner) {
    return fail(
      'reordered',
      r.seq,
      `records were reordered: seq ${r.seq} holds the record written as seq ${belongsAt}, and seq ${owner.seq} the one written as seq ${r.seq}`,
    );
  }
  if (belongsAt > r.seq) {
    return fail(
      'deleted',
      r.seq,
      `record(s) ${r.seq}..${belongsAt - 1} were deleted and later records renumbered`,
    );
  }
  return fail('reordered', r.seq, `seq ${r.seq} holds the record written as seq ${belongsAt}`);
}

/** Is the key behind the latest signature the real audit key? Asks the HSM (or a pin). */
async function confirmTrust(
  actx: Pick<AuditContext, 'backend' | 'log'>,
  keys: AuditKeys,
  kid: string | null,
  seq: number,
  opts: VerifyAuditOptions,
): Promise<AuditVerifyReport['trust']> {
  if (!kid)
    return { kid: null, status: 'none', detail: 'no checkpoint yet: the chain is only self-consistent' };
  if (opts.trustKids?.includes(kid))
    return { kid, status: 'pinned', detail: 'the latest signer is a trusted audit kid' };
  if (opts.online === false) {
    return { kid, status: 'unconfirmed', detail: 'offline: the latest signer was not compared with the HSM' };
  }
  const key = keys.get(kid)!;
  let backend;
  try {
    backend = await actx.backend(key.backendRef.backend);
  } catch (e) {
    return {
      kid,
      status: 'unconfirmed',
      detail: `backend ${key.backendRef.backend} unavailable: ${(e as Error).message}`,
    };
  }
  let exists: boolean;
  try {
    exists = await backend.exists(key.backendRef);
  } catch (e) {
    return { kid, status: 'unconfirmed', detail: `could not ask the HSM: ${(e as Error).message}` };
  }
  if (!exists) {
    return fail(
      'checkpoint-key',
      seq,
      `the key that made the latest signature (${kid}) is not in backend ${backend.name}`,
    );
  }
  const jwk = await backend.publicKey(key.backendRef, key.alg);
  if ((await thumbprint(jwk)) !== kid) {
    return fail(
      'checkpoint-key',
      seq,
      `audit key ${kid}: the stored public key is not the one in backend ${backend.name}`,
    );
  }
  return {
    kid,
    status: 'hsm-confirmed',
    detail: `the latest signer is key ${kid} in backend ${backend.name}`,
  };
}
