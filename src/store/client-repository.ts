import { hash } from 'node:crypto';
import type { DataSource, EntityManager } from 'typeorm';
import { instant, jsonText } from './columns';
import { ClientEntity, type ClientRow, type Grant } from './entities/client.entity';

export type { Grant };

/** An API client as the lifecycle sees it (the row itself). `secretHash` never leaves the lifecycle. */
export type ClientRecord = ClientRow;

function toClientRecord(row: ClientRow): ClientRecord {
  // A NULL grants column (never written by us) reads as no grants.
  return { ...row, grants: row.grants ?? {} };
}

/**
 * A digest of everything an authentication answer depends on: id, name, secret hash, grants,
 * and `updated_at`. A cached answer is good while its row still has this version. It is derived
 * from the row's content rather than from `updated_at` alone, so a replaced secret is noticed
 * even when its write carries the same millisecond as the previous one (a clock stepped back,
 * two hosts' clocks apart, a frozen test clock): every new secret hash has a fresh salt. A row
 * edited outside keywarden (grants changed by SQL) is noticed too, and a previous release's CLI
 * writing to the same store needs nothing new.
 */
export function clientRowVersion(
  c: Pick<ClientRecord, 'id' | 'name' | 'secretHash' | 'updatedAt'> & { grants: unknown },
): string {
  const content = JSON.stringify([c.id, c.name, c.secretHash, c.grants, c.updatedAt.getTime()]);
  return hash('sha256', content, 'base64url').slice(0, 22);
}

/**
 * API client rows. Every write bumps `updated_at` (or removes the row); daemons poll `versions`
 * to drop cached authentications of clients that changed or went away.
 */
export class ClientRepository {
  constructor(private readonly ds: DataSource) {}

  private repo(m?: EntityManager) {
    return (m ?? this.ds.manager).getRepository(ClientEntity);
  }

  async insert(client: ClientRecord, m?: EntityManager): Promise<void> {
    await this.repo(m).insert({ ...client });
  }

  async findById(id: string, m?: EntityManager): Promise<ClientRecord | null> {
    const row = await this.repo(m).findOne({ where: { id } });
    return row ? toClientRecord(row) : null;
  }

  async findByName(name: string, m?: EntityManager): Promise<ClientRecord | null> {
    const row = await this.repo(m).findOne({ where: { name } });
    return row ? toClientRecord(row) : null;
  }

  async list(m?: EntityManager): Promise<ClientRecord[]> {
    return (await this.repo(m).find({ order: { name: 'ASC' } })).map(toClientRecord);
  }

  /** True when a row was removed. */
  async delete(id: string, m?: EntityManager): Promise<boolean> {
    const res = await this.repo(m).delete({ id });
    return (res.affected ?? 0) > 0;
  }

  /** Replaces the secret hash; true when the row exists. */
  async updateSecret(id: string, secretHash: string, now: Date, m?: EntityManager): Promise<boolean> {
    const res = await this.repo(m).update({ id }, { secretHash, updatedAt: now });
    return (res.affected ?? 0) > 0;
  }

  /**
   * Every client's id and clientRowVersion: what a cached authentication was checked against.
   * Reads the raw columns (secret hashes included, as a secret check does) rather than
   * entities: a row whose grants are not JSON (edited by hand) then gets a version no check
   * can have, instead of making every poll fail, which would drop every client's cached answer
   * at each poll and send every request to scrypt.
   */
  async versions(): Promise<Map<string, string>> {
    const rows = (await this.repo()
      .createQueryBuilder('c')
      .select('c.id', 'id')
      .addSelect('c.name', 'name')
      .addSelect('c.secret_hash', 'secretHash')
      .addSelect('c.grants', 'grants')
      .addSelect('c.updated_at', 'updatedAt')
      .orderBy('c.id', 'ASC')
      .getRawMany()) as RawClientVersionRow[];
    return new Map(
      rows.map((r) => [
        r.id,
        clientRowVersion({
          ...r,
          grants: grantsForVersion(r.grants),
          updatedAt: instant.from(r.updatedAt) as Date,
        }),
      ]),
    );
  }
}

interface RawClientVersionRow {
  id: string;
  name: string;
  secretHash: string;
  grants: string | null;
  /** bigint: a string on PostgreSQL, a number on SQLite (instant.from reads both). */
  updatedAt: string | number;
}

/**
 * The grants as a checked secret carries them (the entity's transformer, then NULL as no grants,
 * as in toClientRecord), so the version of a sound row equals the one a check computes; text
 * that is not JSON is kept as text, so that row's version matches no check.
 */
function grantsForVersion(raw: string | null): unknown {
  try {
    return (jsonText.from(raw) as ClientRow['grants'] | null) ?? {};
  } catch {
    return `unparsed:${raw}`;
  }
}
