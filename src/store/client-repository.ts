import type { DataSource, EntityManager } from 'typeorm';
import { instant, jsonText } from './columns';
import { clientVersionsOf, type ClientRecord, type StoredClient } from '../policy/clients';
import { ClientEntity, type ClientRow } from './entities/client.entity';

function toClientRecord(row: ClientRow): ClientRecord {
  // A NULL grants column (never written by us) reads as no grants.
  return {
    ...row,
    secretHash: row.secretHash ?? null,
    certSpkiSha256: row.certSpkiSha256 ?? null,
    grants: row.grants ?? {},
  };
}

/**
 * API client rows. Every write changes the row's version (clientRowVersion) or removes the row;
 * daemons poll `versions` to drop cached authentications of clients that changed or went away.
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

  /** The client bound to the certificate whose SPKI SHA-256 (base64url) this is. */
  async findByCertificate(certSpkiSha256: string, m?: EntityManager): Promise<ClientRecord | null> {
    const row = await this.repo(m).findOne({ where: { certSpkiSha256 } });
    return row ? toClientRecord(row) : null;
  }

  /** True when a row was removed. */
  async delete(id: string, m?: EntityManager): Promise<boolean> {
    const res = await this.repo(m).delete({ id });
    return (res.affected ?? 0) > 0;
  }

  /**
   * Replaces the secret hash and the seal over the new content, if the row still has the secret
   * hash `expectedSecretHash`; true when it did (and was updated).
   */
  async updateSecret(
    id: string,
    expectedSecretHash: string,
    change: { secretHash: string; seal: string },
    now: Date,
    m?: EntityManager,
  ): Promise<boolean> {
    const res = await this.repo(m).update(
      { id, secretHash: expectedSecretHash },
      { ...change, updatedAt: now },
    );
    return (res.affected ?? 0) > 0;
  }

  /**
   * Replaces a row's seal if it still is `expected` (a compare-and-set: two processes re-sealing
   * at once, or an operator's change meanwhile, leave one answer). `updated_at` stays: the content
   * the seal covers did not change. True when the row was updated.
   */
  async replaceSeal(id: string, expected: string | null, seal: string, m?: EntityManager): Promise<boolean> {
    const qb = (m ?? this.ds.manager)
      .createQueryBuilder()
      .update(ClientEntity)
      .set({ seal })
      .where('id = :id', { id });
    if (expected === null) qb.andWhere('seal IS NULL');
    else qb.andWhere('seal = :expected', { expected });
    const res = await qb.execute();
    return (res.affected ?? 0) > 0;
  }

  /**
   * Every client row as stored (StoredClient), by id. Reads the raw columns rather than entities,
   * so a row whose grants are not JSON is read as such instead of failing the read.
   */
  async scan(m?: EntityManager): Promise<StoredClient[]> {
    const rows = (await this.repo(m)
      .createQueryBuilder('c')
      .select('c.id', 'id')
      .addSelect('c.name', 'name')
      .addSelect('c.secret_hash', 'secretHash')
      .addSelect('c.cert_spki_sha256', 'certSpkiSha256')
      .addSelect('c.grants', 'grants')
      .addSelect('c.created_at', 'createdAt')
      .addSelect('c.updated_at', 'updatedAt')
      .addSelect('c.seal', 'seal')
      .orderBy('c.id', 'ASC')
      .getRawMany()) as RawClientRow[];
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      secretHash: r.secretHash ?? null,
      certSpkiSha256: r.certSpkiSha256 ?? null,
      grants: grantsForVersion(r.grants),
      createdAt: instant.from(r.createdAt) as Date,
      updatedAt: instant.from(r.updatedAt) as Date,
      seal: r.seal ?? null,
    }));
  }

  /**
   * Every client's id and clientRowVersion: what a cached authentication was checked against.
   * From `scan` (secret hashes included, as a secret check reads them): a row whose grants are not
   * JSON (edited by hand) then gets a version no check can have, instead of making every poll
   * fail, which would drop every client's cached answer at each poll and send every request to
   * scrypt.
   */
  async versions(): Promise<Map<string, string>> {
    return clientVersionsOf(await this.scan());
  }
}

interface RawClientRow {
  id: string;
  name: string;
  secretHash: string | null;
  certSpkiSha256: string | null;
  grants: string | null;
  /** bigint: a string on PostgreSQL, a number on SQLite (instant.from reads both). */
  createdAt: string | number;
  updatedAt: string | number;
  seal: string | null;
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
