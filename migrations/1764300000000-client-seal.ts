import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `clients.seal`: the audit key's signature over each API client row (src/policy/client-seal.ts),
 * so a store write cannot make a client. Nullable: rows made before it have no seal and are
 * refused until an operator vouches for them with `keywarden clients seal` (docs/api.md).
 * Plain `ALTER TABLE` on both databases: no table rebuild, the rows stay as they are.
 */
export class ClientSeal1764300000000 implements MigrationInterface {
  name = 'ClientSeal1764300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE clients ADD COLUMN seal text');
  }

  async down(q: QueryRunner): Promise<void> {
    // SQLite has had DROP COLUMN since 3.35 (better-sqlite3 bundles a newer one).
    await q.query('ALTER TABLE clients DROP COLUMN seal');
  }
}
