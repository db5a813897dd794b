import { Table, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/** `prev_hash` of the first record ever written. */
const GENESIS_HASH = '0'.repeat(64);

/**
 * The hash-chained audit log (I7): `audit_records` plus the single `audit_head` row. Triggers make
 * the table append-only against bugs and careless hands: UPDATE is refused, and DELETE is allowed
 * only below `audit_head.prune_below`, which `audit prune` raises inside its own transaction.
 * (Someone with full write access can drop triggers; detecting that is the hash chain's job.)
 */
export class AuditLog1764100000000 implements MigrationInterface {
  name = 'AuditLog1764100000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      new Table({
        name: 'audit_records',
        columns: [
          { name: 'seq', type: 'bigint', isPrimary: true },
          { name: 'at', type: 'bigint' },
          { name: 'type', type: 'varchar', length: '64' },
          { name: 'actor', type: 'varchar', length: '200' },
          { name: 'scope', type: 'varchar', length: '64', isNullable: true },
          { name: 'kid', type: 'varchar', length: '64', isNullable: true },
          { name: 'data', type: 'text' },
          { name: 'prev_hash', type: 'varchar', length: '64' },
          { name: 'hash', type: 'varchar', length: '64' },
        ],
      }),
    );
    await q.createIndex('audit_records', new TableIndex({ name: 'idx_audit_kid', columnNames: ['kid'] }));
    await q.createIndex('audit_records', new TableIndex({ name: 'idx_audit_scope', columnNames: ['scope'] }));
    await q.createIndex('audit_records', new TableIndex({ name: 'idx_audit_type', columnNames: ['type'] }));
    await q.createTable(
      new Table({
        name: 'audit_head',
        columns: [
          { name: 'id', type: 'integer', isPrimary: true },
          { name: 'seq', type: 'bigint' },
          { name: 'hash', type: 'varchar', length: '64' },
          { name: 'marker', type: 'text', isNullable: true },
          { name: 'marker_seq', type: 'bigint', isNullable: true },
          { name: 'prune_below', type: 'bigint', default: 0 },
          { name: 'updated_at', type: 'bigint' },
        ],
      }),
    );
    await q.query(
      `INSERT INTO audit_head (id, seq, hash, prune_below, updated_at) VALUES (1, 0, '${GENESIS_HASH}', 0, 0)`,
    );
    if (q.connection.options.type === 'postgres') {
      await q.query(`
        CREATE FUNCTION keywarden_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' AND OLD.seq < (SELECT prune_below FROM audit_head WHERE id = 1) THEN
            RETURN OLD;
          END IF;
          RAISE EXCEPTION 'audit records are append-only (% refused; only audit prune removes a prefix)', TG_OP;
        END $$`);
      await q.query(`CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
        FOR EACH ROW EXECUTE FUNCTION keywarden_audit_append_only()`);
      await q.query(`CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
        FOR EACH STATEMENT EXECUTE FUNCTION keywarden_audit_append_only()`);
    } else {
      await q.query(`CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END`);
      await q.query(`CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
        WHEN OLD.seq >= (SELECT prune_below FROM audit_head WHERE id = 1)
        BEGIN SELECT RAISE(ABORT, 'audit records are append-only; only audit prune removes a prefix'); END`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') {
      await q.query('DROP TRIGGER IF EXISTS audit_records_no_truncate ON audit_records');
      await q.query('DROP TRIGGER IF EXISTS audit_records_append_only ON audit_records');
      await q.query('DROP FUNCTION IF EXISTS keywarden_audit_append_only()');
    }
    await q.dropTable('audit_head');
    await q.dropTable('audit_records');
  }
}
