import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `key_set_version`: one row that the database itself changes on every write to `keys`
 * (triggers), in the writer's transaction. Daemons poll it to decide whether to reload their
 * keys. It replaces a marker computed from the rows (COUNT and SUM of `updated_at`): hosts whose
 * clocks disagree stamp `updated_at` out of order, so two writes between polls could leave that
 * sum as it was, and a revocation would not reach a polling daemon. The row changes on every
 * write whatever its timestamps, including writes made outside keywarden.
 *
 * `version` counts writes; `nonce` is drawn at random by each write. The pair is what daemons
 * compare, so a value is never seen twice for two different key sets: a counter alone comes back
 * to an earlier value after a rolled-back write or a restored backup, and the next write would
 * then reproduce a value a daemon had already cached for other keys.
 */
export class KeySetVersion1764200000000 implements MigrationInterface {
  name = 'KeySetVersion1764200000000';

  async up(q: QueryRunner): Promise<void> {
    // Every column of `keys` as of this migration except `last_state`, which only remembers which
    // state change the audit log has recorded (reconcile writes it at each transition of each
    // key; reloading every daemon's keys for it would cost a full reload per transition). Frozen
    // here: a later migration that adds a column recreates the update triggers with it (and a
    // test compares the installed triggers with the entity).
    const columns =
      'id, kid, scope, alg, status, backend, backend_ref, public_jwk, publish_at, activate_at, ' +
      'retire_at, expires_at, revoked_at, revoked_reason, destroyed_at, created_at, created_by, updated_at';
    await q.query(
      "CREATE TABLE key_set_version (id integer PRIMARY KEY, version bigint NOT NULL, nonce varchar(32) NOT NULL DEFAULT '')",
    );
    await q.query("INSERT INTO key_set_version (id, version, nonce) VALUES (1, 0, '')");
    if (q.connection.options.type === 'postgres') {
      await q.query(`
        CREATE FUNCTION keywarden_key_set_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          UPDATE key_set_version
            SET version = version + 1, nonce = md5(random()::text || clock_timestamp()::text)
            WHERE id = 1;
          RETURN NULL;
        END $$`);
      // Per statement: one change per write, however many rows it touched (TRUNCATE included).
      await q.query(`CREATE TRIGGER keys_changed
        AFTER INSERT OR UPDATE OF ${columns} OR DELETE OR TRUNCATE ON keys
        FOR EACH STATEMENT EXECUTE FUNCTION keywarden_key_set_changed()`);
    } else {
      // SQLite has row triggers only (and no TRUNCATE: DELETE without WHERE fires them).
      for (const [name, event] of [
        ['insert', 'INSERT'],
        ['update', `UPDATE OF ${columns}`],
        ['delete', 'DELETE'],
      ]) {
        await q.query(`CREATE TRIGGER keys_changed_${name} AFTER ${event} ON keys
          BEGIN
            UPDATE key_set_version SET version = version + 1, nonce = lower(hex(randomblob(16))) WHERE id = 1;
          END`);
      }
    }
  }

  async down(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') {
      await q.query('DROP TRIGGER IF EXISTS keys_changed ON keys');
      await q.query('DROP FUNCTION IF EXISTS keywarden_key_set_changed()');
    } else {
      for (const name of ['insert', 'update', 'delete'])
        await q.query(`DROP TRIGGER IF EXISTS keys_changed_${name}`);
    }
    await q.query('DROP TABLE key_set_version');
  }
}
