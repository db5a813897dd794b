import { createHash } from 'node:crypto';
import type { DataSource, EntityManager } from 'typeorm';
import { KeywardenError } from '../policy/errors';
import { chainNext, type ChainedContent, type ChainedRecord } from './chain';

/** The head row: where the next append links, and the latest signed head marker. */
export interface AuditHead {
  seq: number;
  hash: string;
  marker: SignedMarker | null;
  markerSeq: number | null;
  pruneBelow: number;
}

/** A flattened JWS (RFC 7515 §7.2.2) as stored: never joined into a compact, token-shaped string. */
export interface SignedMarker {
  protected: string;
  payload: string;
  signature: string;
}

/** Filters for `tail`. */
export interface AuditFilter {
  scope?: string;
  kid?: string;
  type?: string;
  limit: number;
}

interface RawRecord {
  seq: string | number;
  at: string | number;
  type: string;
  actor: string;
  scope: string | null;
  kid: string | null;
  data: string;
  prev_hash: string;
  hash: string;
}

/** Advisory lock key that serialises appends on PostgreSQL (first 8 bytes of a SHA-256). */
export const APPEND_LOCK_KEY = createHash('sha256')
  .update('keywarden:audit:append')
  .digest()
  .readBigInt64BE(0)
  .toString();

const COLUMNS = 'seq, at, type, actor, scope, kid, data, prev_hash, hash';

function toRecord(r: RawRecord): ChainedRecord {
  return {
    seq: Number(r.seq),
    at: new Date(Number(r.at)),
    type: r.type,
    actor: r.actor,
    scope: r.scope,
    kid: r.kid,
    data: JSON.parse(r.data) as Record<string, unknown>,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/**
 * Raw access to `audit_records` / `audit_head` on SQLite and PostgreSQL. Appends are serialised
 * so concurrent writers (several daemons, the CLI) never fork the chain: on PostgreSQL by a
 * transaction-scoped advisory lock taken in the caller's transaction, on SQLite by the database
 * write lock, which the first statement of an append takes. `seq` is the primary key, so even a
 * broken lock could only make an append fail, never fork the chain.
 */
export class AuditStore {
  readonly pg: boolean;

  constructor(private readonly ds: DataSource) {
    this.pg = ds.options.type === 'postgres';
  }

  private async q<T>(m: EntityManager | undefined, sql: string, params: unknown[] = []): Promise<T[]> {
    let text = sql;
    if (this.pg) {
      let n = 0;
      text = sql.replace(/\?/g, () => `$${++n}`);
    }
    const res = (await (m ?? this.ds.manager).query(text, params)) as unknown;
    return (Array.isArray(res) ? res : []) as T[];
  }

  /** Runs `fn` in one transaction of the audit log's database. */
  transaction<T>(fn: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.ds.transaction(fn);
  }

  /** True on SQLite while a transaction holds the process's one connection (see audit jobs). */
  connectionBusy(): boolean {
    if (this.pg) return false;
    const qr = (this.ds.driver as { queryRunner?: { isTransactionActive?: boolean } }).queryRunner;
    return qr?.isTransactionActive === true;
  }

  /** Appends one record after the current head. Must run inside the caller's transaction. */
  async append(m: EntityManager, content: Omit<ChainedContent, 'seq' | 'prevHash'>): Promise<ChainedRecord> {
    if (!m.queryRunner?.isTransactionActive) {
      throw new KeywardenError('INTERNAL', 'audit append outside a transaction');
    }
    await this.lock(m);
    const head = await this.head(m);
    const rec = chainNext(head, content);
    await this.q(m, `INSERT INTO audit_records (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
      rec.seq,
      rec.at.getTime(),
      rec.type,
      rec.actor,
      rec.scope,
      rec.kid,
      JSON.stringify(rec.data),
      rec.prevHash,
      rec.hash,
    ]);
    await this.q(m, 'UPDATE audit_head SET seq = ?, hash = ?, updated_at = ? WHERE id = 1', [
      rec.seq,
      rec.hash,
      rec.at.getTime(),
    ]);
    return rec;
  }

  /**
   * Takes the chain lock for the rest of the caller's transaction: a transaction-scoped advisory
   * lock on PostgreSQL; on SQLite a write to the head row, which takes the database write lock
   * before anything is read. Re-entrant within one transaction.
   */
  async lock(m: EntityManager): Promise<void> {
    if (this.pg) await this.q(m, 'SELECT pg_advisory_xact_lock(?::bigint)', [APPEND_LOCK_KEY]);
    else await this.q(m, 'UPDATE audit_head SET id = id WHERE id = 1');
  }

  async head(m?: EntityManager): Promise<AuditHead> {
    const rows = await this.q<{
      seq: string | number;
      hash: string;
      marker: string | null;
      marker_seq: string | number | null;
      prune_below: string | number;
    }>(m, 'SELECT seq, hash, marker, marker_seq, prune_below FROM audit_head WHERE id = 1');
    const r = rows[0];
    if (!r)
      throw new KeywardenError(
        'STORE_ERROR',
        'audit_head row is missing (the audit-log migration did not run?)',
      );
    let marker: SignedMarker | null;
    try {
      marker = r.marker ? (JSON.parse(r.marker) as SignedMarker) : null;
    } catch {
      // An unreadable marker is kept as an empty one so `verify` reports it instead of skipping it.
      marker = { protected: '', payload: '', signature: '' };
    }
    return {
      seq: Number(r.seq),
      hash: r.hash,
      marker,
      markerSeq: r.marker_seq == null ? null : Number(r.marker_seq),
      pruneBelow: Number(r.prune_below),
    };
  }

  /** Replaces the head marker unless a newer one is already stored (monotonic). */
  async setMarker(marker: SignedMarker, markerSeq: number, m?: EntityManager): Promise<boolean> {
    const before = await this.head(m);
    if (before.markerSeq !== null && before.markerSeq >= markerSeq) return false;
    await this.q(
      m,
      'UPDATE audit_head SET marker = ?, marker_seq = ? WHERE id = 1 AND (marker_seq IS NULL OR marker_seq < ?)',
      [JSON.stringify(marker), markerSeq, markerSeq],
    );
    return true;
  }

  async bySeq(seq: number, m?: EntityManager): Promise<ChainedRecord | null> {
    const rows = await this.q<RawRecord>(m, `SELECT ${COLUMNS} FROM audit_records WHERE seq = ?`, [seq]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async first(m?: EntityManager): Promise<ChainedRecord | null> {
    const rows = await this.q<RawRecord>(m, `SELECT ${COLUMNS} FROM audit_records ORDER BY seq ASC LIMIT 1`);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async last(m?: EntityManager): Promise<ChainedRecord | null> {
    const rows = await this.q<RawRecord>(m, `SELECT ${COLUMNS} FROM audit_records ORDER BY seq DESC LIMIT 1`);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** Records with seq >= fromSeq, ascending, at most `limit`. */
  async range(fromSeq: number, limit: number, m?: EntityManager): Promise<ChainedRecord[]> {
    const rows = await this.q<RawRecord>(
      m,
      `SELECT ${COLUMNS} FROM audit_records WHERE seq >= ? ORDER BY seq ASC LIMIT ?`,
      [fromSeq, limit],
    );
    return rows.map(toRecord);
  }

  /** The newest record of a type (e.g. the latest checkpoint or prune anchor). */
  async latestOfType(type: string, m?: EntityManager): Promise<ChainedRecord | null> {
    const rows = await this.q<RawRecord>(
      m,
      `SELECT ${COLUMNS} FROM audit_records WHERE type = ? ORDER BY seq DESC LIMIT 1`,
      [type],
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** The newest `limit` records matching the filter, returned oldest first. */
  async tail(f: AuditFilter, m?: EntityManager): Promise<ChainedRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    for (const [column, value] of [
      ['scope', f.scope],
      ['kid', f.kid],
      ['type', f.type],
    ] as const) {
      if (value === undefined) continue;
      where.push(`${column} = ?`);
      params.push(value);
    }
    const rows = await this.q<RawRecord>(
      m,
      `SELECT ${COLUMNS} FROM audit_records ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ` +
        'ORDER BY seq DESC LIMIT ?',
      [...params, f.limit],
    );
    return rows.map(toRecord).reverse();
  }

  /** Number of records after `seq` (cheap: a primary-key range). */
  async countAfter(seq: number, m?: EntityManager): Promise<number> {
    const rows = await this.q<{ n: string | number }>(
      m,
      'SELECT COUNT(*) AS n FROM audit_records WHERE seq > ?',
      [seq],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Deletes every record below `seq`. Raises `prune_below` first, which is what lets the
   * append-only trigger allow it. Must run inside the prune's transaction.
   */
  async deleteBelow(m: EntityManager, seq: number): Promise<number> {
    await this.lock(m);
    await this.q(m, 'UPDATE audit_head SET prune_below = ? WHERE id = 1', [seq]);
    const before = await this.q<{ n: string | number }>(
      m,
      'SELECT COUNT(*) AS n FROM audit_records WHERE seq < ?',
      [seq],
    );
    await this.q(m, 'DELETE FROM audit_records WHERE seq < ?', [seq]);
    return Number(before[0]?.n ?? 0);
  }
}
