import { In, IsNull, type DataSource, type EntityManager } from 'typeorm';
import type { KeyRecord } from '../policy/key';
import { KeywardenError } from '../policy/errors';
import { KeyEntity, type KeyRow } from './entities/key.entity';
import { changedKeyIds } from './key-changes';
import { notifyKeyChange } from './key-change-notifier';
import { readKeySetVersion } from './key-set-version';

/** Maps a row to the domain record the lifecycle works with. */
export function toKeyRecord(row: KeyRow): KeyRecord {
  const { backend: _backend, updatedAt: _updatedAt, lastState: _lastState, ...record } = row;
  return record;
}

/**
 * Key rows. Every write goes through here; the database changes the key set version in each
 * writing transaction (triggers), which daemons poll, and on PostgreSQL every write also sends
 * `NOTIFY keywarden_keys` in the same transaction, so listening daemons reload at commit
 * instead of at their next poll. Methods take an optional EntityManager so callers can put a
 * key change and its audit record in one transaction.
 */
export class KeyRepository {
  constructor(private readonly ds: DataSource) {}

  private repo(m?: EntityManager) {
    return (m ?? this.ds.manager).getRepository(KeyEntity);
  }

  async listByScope(scope: string, m?: EntityManager): Promise<KeyRecord[]> {
    const rows = await this.repo(m).find({ where: { scope }, order: { activateAt: 'ASC' } });
    return rows.map(toKeyRecord);
  }

  async listAll(m?: EntityManager): Promise<KeyRecord[]> {
    return (await this.repo(m).find({ order: { scope: 'ASC', activateAt: 'ASC' } })).map(toKeyRecord);
  }

  async findByKid(kid: string, m?: EntityManager): Promise<KeyRecord | null> {
    const row = await this.repo(m).findOne({ where: { kid } });
    return row ? toKeyRecord(row) : null;
  }

  /** Finds by full kid, or by a unique prefix of at least 8 characters (operator convenience). */
  async findByKidOrPrefix(kidOrPrefix: string, m?: EntityManager): Promise<KeyRecord | null> {
    const exact = await this.findByKid(kidOrPrefix, m);
    if (exact || kidOrPrefix.length < 8 || !/^[A-Za-z0-9_-]+$/.test(kidOrPrefix)) return exact;
    // Not LIKE: `_` (a base64url character) is a LIKE wildcard, and SQLite's LIKE ignores case.
    const rows = await this.repo(m)
      .createQueryBuilder('k')
      .where('substr(k.kid, 1, :n) = :p', { n: kidOrPrefix.length, p: kidOrPrefix })
      .limit(2)
      .getMany();
    if (rows.length > 1) {
      throw new KeywardenError('REQUEST_INVALID', `kid prefix "${kidOrPrefix}" matches more than one key`);
    }
    return rows[0] ? toKeyRecord(rows[0]) : null;
  }

  async findById(id: string, m?: EntityManager): Promise<KeyRecord | null> {
    const row = await this.repo(m).findOne({ where: { id } });
    return row ? toKeyRecord(row) : null;
  }

  /** Step 1 of generation: the row exists before the backend object does. */
  async insertGenerating(key: KeyRecord, now: Date, m?: EntityManager): Promise<void> {
    await this.repo(m).insert({ ...key, backend: key.backendRef.backend, updatedAt: now, lastState: null });
    await notifyKeyChange(this.ds, m);
  }

  /** Step 2: the backend made the key; record its public half and kid. */
  async completeGenerating(
    id: string,
    fields: Pick<KeyRecord, 'kid' | 'publicJwk' | 'backendRef'>,
    now: Date,
    m?: EntityManager,
  ): Promise<void> {
    const res = await this.repo(m).update(
      { id, status: 'generating' },
      { ...fields, status: 'ready', updatedAt: now },
    );
    if (res.affected !== 1) throw new KeywardenError('STORE_ERROR', `key row ${id} is not generating`);
    await notifyKeyChange(this.ds, m);
  }

  /** Removes a `generating` row whose backend object never came to be. */
  async deleteGenerating(id: string, m?: EntityManager): Promise<void> {
    await this.repo(m).delete({ id, status: 'generating' });
    await notifyKeyChange(this.ds, m);
  }

  /** Sets revokedAt (only ever earlier: an already-revoked key keeps its first instant). */
  async revoke(id: string, at: Date, reason: string, m?: EntityManager): Promise<boolean> {
    const res = await this.repo(m).update(
      { id, revokedAt: IsNull() },
      { revokedAt: at, revokedReason: reason, updatedAt: at },
    );
    if (res.affected === 1) await notifyKeyChange(this.ds, m);
    return res.affected === 1;
  }

  async markDestroyed(id: string, at: Date, m?: EntityManager): Promise<void> {
    await this.repo(m).update({ id, destroyedAt: IsNull() }, { destroyedAt: at, updatedAt: at });
    await notifyKeyChange(this.ds, m);
  }

  async setLastState(id: string, state: string, m?: EntityManager): Promise<void> {
    await this.repo(m).update({ id }, { lastState: state });
  }

  async lastStates(scope: string, m?: EntityManager): Promise<Map<string, string | null>> {
    const rows = await this.repo(m).find({ where: { scope }, select: { id: true, lastState: true } });
    return new Map(rows.map((r) => [r.id, r.lastState]));
  }

  /** Every row's last recorded state, by id, in one query (the scheduler's first pass). */
  async allLastStates(m?: EntityManager): Promise<Map<string, string | null>> {
    const rows = await this.repo(m).find({ select: { id: true, lastState: true } });
    return new Map(rows.map((r) => [r.id, r.lastState]));
  }

  /**
   * The key set version (see readKeySetVersion) and, unless it equals `known`, every key, read
   * in one transaction. On SQLite a process has one connection, and outside the transaction
   * queue a read could see another flow's uncommitted write (a revocation that then rolls back
   * would stay cached).
   */
  async readIfChanged(known: string | null): Promise<{ version: string; keys: KeyRecord[] | null }> {
    return this.ds.transaction(async (m) => {
      const version = await readKeySetVersion(m);
      if (version === known) return { version, keys: null };
      return { version, keys: await this.listAll(m) };
    });
  }

  /**
   * What changed since the version `known` (null: nothing held), read in one transaction like
   * readIfChanged: nothing; the rows of the ids the change log names since then (an id without a
   * row was deleted); or, when the log cannot vouch for the whole stretch (see changedKeyIds),
   * every row.
   */
  async readChangesSince(
    known: string | null,
  ): Promise<
    | { version: string; kind: 'unchanged' }
    | { version: string; kind: 'all'; keys: KeyRecord[] }
    | { version: string; kind: 'changed'; ids: string[]; keys: KeyRecord[] }
  > {
    return this.ds.transaction(async (m) => {
      const version = await readKeySetVersion(m);
      if (version === known) return { version, kind: 'unchanged' as const };
      const ids = known === null ? null : await changedKeyIds(m, known, version);
      if (ids === null) return { version, kind: 'all' as const, keys: await this.listAll(m) };
      return { version, kind: 'changed' as const, ids, keys: await this.findByIds(ids, m) };
    });
  }

  /** The rows of these ids that exist (in no particular order). */
  async findByIds(ids: readonly string[], m?: EntityManager): Promise<KeyRecord[]> {
    const rows: KeyRecord[] = [];
    // Chunks keep each statement well under SQLite's bound-parameter limit.
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      for (const row of await this.repo(m).find({ where: { id: In(chunk) } })) rows.push(toKeyRecord(row));
    }
    return rows;
  }
}
