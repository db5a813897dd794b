import type { DataSource, EntityManager } from 'typeorm';
import { ClientEntity, type ClientRow, type Grant } from './entities/client.entity';

export type { Grant };

/** An API client as the lifecycle sees it (the row itself). `secretHash` never leaves the lifecycle. */
export type ClientRecord = ClientRow;

function toClientRecord(row: ClientRow): ClientRecord {
  // A NULL grants column (never written by us) reads as no grants.
  return { ...row, grants: row.grants ?? {} };
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

  /** Every client's id and `updated_at` (epoch ms): what a cached authentication was checked against. */
  async versions(): Promise<Map<string, number>> {
    const rows = (await this.repo()
      .createQueryBuilder('c')
      .select('c.id', 'id')
      .addSelect('c.updated_at', 'updated')
      .orderBy('c.id', 'ASC')
      .getRawMany()) as { id: string; updated: string | number }[];
    return new Map(rows.map((r) => [r.id, Number(r.updated)]));
  }
}
