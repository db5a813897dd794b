import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The columns of `keys` whose update changes the key set version: every column but `last_state`
 * (frozen as of KeySetVersion1764200000000; a later migration that adds a column recreates the
 * update triggers with it, and a test compares the installed triggers with the entity).
 */
const VERSIONED_COLUMNS =
  'id, kid, scope, alg, status, backend, backend_ref, public_jwk, publish_at, activate_at, ' +
  'retire_at, expires_at, revoked_at, revoked_reason, destroyed_at, created_at, created_by, updated_at';

/** How many changes the log keeps: a daemon further behind reloads everything. */
export const KEY_CHANGE_LOG_KEPT = 10_000;

/**
 * `key_changes`: which key rows each key set version changed, so a daemon that holds version V
 * reads only the rows changed since, instead of every row (issue #20: one revocation among
 * 100,000 scopes). The same triggers that raise `key_set_version` write it, in the writer's
 * transaction, now once per changed row (PostgreSQL's were per statement): each row change is one
 * version, with its own random nonce, logged as (version, nonce, key_id, old_key_id).
 *
 * A reader trusts the log only as a chain from what it holds: the entry of its own version must
 * carry its own nonce, the entries after it must be consecutive, and the last must be the current
 * version and nonce (src/store/key-changes.ts). A restored backup, a rolled-back or pruned stretch
 * or an entry without a key id (TRUNCATE on PostgreSQL) breaks the chain, and the reader reloads
 * everything. The triggers keep the last KEY_CHANGE_LOG_KEPT entries.
 */
export class KeyChangeLog1764500000000 implements MigrationInterface {
  name = 'KeyChangeLog1764500000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      'CREATE TABLE key_changes (version bigint PRIMARY KEY, nonce varchar(32) NOT NULL, ' +
        'key_id varchar(36) NULL, old_key_id varchar(36) NULL)',
    );
    if (q.connection.options.type === 'postgres') {
      await q.query('DROP TRIGGER IF EXISTS keys_changed ON keys');
      await q.query('DROP FUNCTION IF EXISTS keywarden_key_set_changed()');
      // One version per row changed; TRUNCATE (no rows) logs one entry without a key id.
      await q.query(`
        CREATE FUNCTION keywarden_key_set_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          v bigint;
          n varchar(32) := md5(random()::text || clock_timestamp()::text);
          k varchar(36);
          o varchar(36);
        BEGIN
          UPDATE key_set_version SET version = version + 1, nonce = n WHERE id = 1 RETURNING version INTO v;
          IF TG_OP = 'INSERT' THEN k := NEW.id;
          ELSIF TG_OP = 'UPDATE' THEN k := NEW.id; o := OLD.id;
          ELSIF TG_OP = 'DELETE' THEN k := OLD.id;
          END IF;
          INSERT INTO key_changes (version, nonce, key_id, old_key_id) VALUES (v, n, k, o);
          DELETE FROM key_changes WHERE version <= v - ${KEY_CHANGE_LOG_KEPT};
          RETURN NULL;
        END $$`);
      await q.query(`CREATE TRIGGER keys_changed
        AFTER INSERT OR UPDATE OF ${VERSIONED_COLUMNS} OR DELETE ON keys
        FOR EACH ROW EXECUTE FUNCTION keywarden_key_set_changed()`);
      await q.query(`CREATE TRIGGER keys_truncated AFTER TRUNCATE ON keys
        FOR EACH STATEMENT EXECUTE FUNCTION keywarden_key_set_changed()`);
    } else {
      for (const [name, event, keyId, oldKeyId] of [
        ['insert', 'INSERT', 'NEW.id', 'NULL'],
        ['update', `UPDATE OF ${VERSIONED_COLUMNS}`, 'NEW.id', 'OLD.id'],
        ['delete', 'DELETE', 'OLD.id', 'NULL'],
      ] as const) {
        await q.query(`DROP TRIGGER IF EXISTS keys_changed_${name}`);
        await q.query(`CREATE TRIGGER keys_changed_${name} AFTER ${event} ON keys
          BEGIN
            UPDATE key_set_version SET version = version + 1, nonce = lower(hex(randomblob(16))) WHERE id = 1;
            INSERT INTO key_changes (version, nonce, key_id, old_key_id)
              SELECT version, nonce, ${keyId}, ${oldKeyId} FROM key_set_version WHERE id = 1;
            DELETE FROM key_changes
              WHERE version <= (SELECT version FROM key_set_version WHERE id = 1) - ${KEY_CHANGE_LOG_KEPT};
          END`);
      }
    }
  }

  async down(q: QueryRunner): Promise<void> {
    if (q.connection.options.type === 'postgres') {
      await q.query('DROP TRIGGER IF EXISTS keys_truncated ON keys');
      await q.query('DROP TRIGGER IF EXISTS keys_changed ON keys');
      await q.query('DROP FUNCTION IF EXISTS keywarden_key_set_changed()');
      // KeySetVersion1764200000000's per-statement trigger, as it was.
      await q.query(`
        CREATE FUNCTION keywarden_key_set_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          UPDATE key_set_version
            SET version = version + 1, nonce = md5(random()::text || clock_timestamp()::text)
            WHERE id = 1;
          RETURN NULL;
        END $$`);
      await q.query(`CREATE TRIGGER keys_changed
        AFTER INSERT OR UPDATE OF ${VERSIONED_COLUMNS} OR DELETE OR TRUNCATE ON keys
        FOR EACH STATEMENT EXECUTE FUNCTION keywarden_key_set_changed()`);
    } else {
      for (const [name, event] of [
        ['insert', 'INSERT'],
        ['update', `UPDATE OF ${VERSIONED_COLUMNS}`],
        ['delete', 'DELETE'],
      ]) {
        await q.query(`DROP TRIGGER IF EXISTS keys_changed_${name}`);
        await q.query(`CREATE TRIGGER keys_changed_${name} AFTER ${event} ON keys
          BEGIN
            UPDATE key_set_version SET version = version + 1, nonce = lower(hex(randomblob(16))) WHERE id = 1;
          END`);
      }
    }
    await q.query('DROP TABLE key_changes');
  }
}
