import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Keys, API clients and scope locks. Written with TypeORM's schema builder so the same
 * migration runs on SQLite and PostgreSQL. Instants are bigint epoch milliseconds.
 */
export class InitialSchema1764000000000 implements MigrationInterface {
  name = 'InitialSchema1764000000000';

  async up(q: QueryRunner): Promise<void> {
    const at = (name: string, isNullable = false) => ({ name, type: 'bigint', isNullable });
    await q.createTable(
      new Table({
        name: 'keys',
        columns: [
          { name: 'id', type: 'varchar', length: '36', isPrimary: true },
          { name: 'kid', type: 'varchar', length: '64', isNullable: true, isUnique: true },
          { name: 'scope', type: 'varchar', length: '64' },
          { name: 'alg', type: 'varchar', length: '8' },
          { name: 'status', type: 'varchar', length: '16' },
          { name: 'backend', type: 'varchar', length: '64' },
          { name: 'backend_ref', type: 'text' },
          { name: 'public_jwk', type: 'text', isNullable: true },
          at('publish_at'),
          at('activate_at'),
          at('retire_at'),
          at('expires_at'),
          at('revoked_at', true),
          { name: 'revoked_reason', type: 'text', isNullable: true },
          at('destroyed_at', true),
          at('created_at'),
          { name: 'created_by', type: 'varchar', length: '128' },
          at('updated_at'),
          { name: 'last_state', type: 'varchar', length: '16', isNullable: true },
        ],
      }),
    );
    await q.createIndex('keys', new TableIndex({ name: 'idx_keys_scope', columnNames: ['scope'] }));
    await q.createTable(
      new Table({
        name: 'clients',
        columns: [
          { name: 'id', type: 'varchar', length: '36', isPrimary: true },
          { name: 'name', type: 'varchar', length: '64', isUnique: true },
          { name: 'secret_hash', type: 'text' },
          { name: 'grants', type: 'text' },
          at('created_at'),
          at('updated_at'),
        ],
      }),
    );
    await q.createTable(
      new Table({
        name: 'scope_locks',
        columns: [
          { name: 'scope', type: 'varchar', length: '64', isPrimary: true },
          { name: 'holder', type: 'varchar', length: '200' },
          at('expires_at_ms'),
        ],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('scope_locks');
    await q.dropTable('clients');
    await q.dropTable('keys');
  }
}
