/**
 * Schema migrations on a store that already holds data, on SQLite and PostgreSQL: a store made
 * by the previous release (every migration before the key set version) is upgraded in place,
 * the installed triggers cover every column the key cache reads, the counter moves on key writes
 * and not on `last_state`, the migration reverts cleanly, and a store whose trigger was removed
 * by hand is refused. The client seal and certificate binding columns are added to stores that
 * hold clients, keeping them (on SQLite the second rebuilds the table: its constraints survive).
 * The key change log names every changed row, one version per row, and refuses to vouch for a
 * version from before it or a TRUNCATE.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { hasCode } from '../../src/policy/errors';
import { openStore } from '../../src/store/data-source';
import { changedKeyIds } from '../../src/store/key-changes';
import {
  installedKeyTriggers,
  readKeySetVersion,
  versionedKeyColumns,
} from '../../src/store/key-set-version';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

/** Every migration before the one named (a previous release's store). */
const migrationsBefore = (name: string) =>
  MIGRATIONS.slice(
    0,
    MIGRATIONS.findIndex((m) => m.name === name),
  );
const BEFORE_KEY_SET_VERSION = migrationsBefore('KeySetVersion1764200000000');
const BEFORE_CLIENT_SEAL = migrationsBefore('ClientSeal1764300000000');
const BEFORE_CLIENT_CERTIFICATE = migrationsBefore('ClientCertificate1764400000000');
const BEFORE_KEY_CHANGE_LOG = migrationsBefore('KeyChangeLog1764500000000');

function dataSource(url: string, migrations: typeof MIGRATIONS): DataSource {
  return url.startsWith('sqlite:')
    ? new DataSource({ type: 'better-sqlite3', database: url.slice('sqlite:'.length), migrations })
    : new DataSource({ type: 'postgres', url, migrations });
}

const KEY_ROW = {
  id: '00000000-0000-4000-8000-000000000001',
  kid: 'kid-1',
  scope: 'demo',
  alg: 'ES256',
  status: 'ready',
  backend: 'hsm',
  backend_ref: '{}',
  public_jwk: '{}',
  publish_at: 1,
  activate_at: 2,
  retire_at: 3,
  expires_at: 4,
  created_at: 1,
  created_by: 'test',
  updated_at: 1,
};

describe('store migrations on a store with data', function () {
  this.timeout(120_000);
  let pg: TestPostgres | undefined;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kw-migrations-'));
  });
  after(async () => {
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  for (const kind of ['SQLite', 'PostgreSQL'] as const) {
    it(`${kind}: upgrades a previous release's store in place, counts key writes, reverts, and refuses a store without its triggers`, async () => {
      let url: string;
      if (kind === 'SQLite') url = `sqlite:${join(dir, 'kw.db')}`;
      else {
        pg = await startPostgres();
        url = await pg.createDatabase('migrations');
      }
      const p = (n: number) => (kind === 'SQLite' ? '?' : `$${n}`);
      const cols = Object.keys(KEY_ROW);
      const insert = `INSERT INTO keys (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`;

      const old = dataSource(url, BEFORE_KEY_SET_VERSION);
      await old.initialize();
      await old.runMigrations({ transaction: 'each' });
      await old.query(insert, Object.values(KEY_ROW));
      await old.destroy();

      const ds = dataSource(url, MIGRATIONS);
      await ds.initialize();
      try {
        const applied = await ds.runMigrations({ transaction: 'each' });
        assert.deepEqual(
          applied.map((m) => m.name),
          [
            'KeySetVersion1764200000000',
            'ClientSeal1764300000000',
            'ClientCertificate1764400000000',
            'KeyChangeLog1764500000000',
          ],
        );
        const version = async () =>
          Number(
            (
              (await ds.query('SELECT version FROM key_set_version WHERE id = 1')) as { version: string }[]
            )[0]!.version,
          );
        assert.equal(await version(), 0);
        // The installed triggers, read back from the database, cover every column the cache reads.
        const installed = await installedKeyTriggers(ds);
        assert.ok(installed.insert && installed.delete);
        assert.deepEqual([...installed.updateColumns].sort(), versionedKeyColumns().sort());
        assert.ok(!installed.updateColumns.includes('last_state'));
        // The existing row is kept, and writes to it move the counter.
        await ds.query(`UPDATE keys SET revoked_at = ${p(1)}, revoked_reason = ${p(2)} WHERE id = ${p(3)}`, [
          5,
          'test',
          KEY_ROW.id,
        ]);
        assert.equal(await version(), 1);
        await ds.query(`UPDATE keys SET last_state = ${p(1)} WHERE id = ${p(2)}`, ['active', KEY_ROW.id]);
        assert.equal(await version(), 1, 'last_state alone must not move the counter');
        await ds.query(`DELETE FROM keys WHERE id = ${p(1)}`, [KEY_ROW.id]);
        assert.equal(await version(), 2);
        await ds.query(insert, Object.values(KEY_ROW));
        assert.equal(await version(), 3);

        const nonces = new Set<string>();
        for (let i = 0; i < 3; i++) {
          await ds.query(`UPDATE keys SET revoked_reason = ${p(1)} WHERE id = ${p(2)}`, [
            `n${i}`,
            KEY_ROW.id,
          ]);
          nonces.add(
            ((await ds.query('SELECT nonce FROM key_set_version')) as { nonce: string }[])[0]!.nonce,
          );
        }
        assert.equal(nonces.size, 3, 'each write draws a new nonce');

        await ds.undoLastMigration({ transaction: 'each' }); // KeyChangeLog1764500000000
        await ds.undoLastMigration({ transaction: 'each' }); // ClientCertificate1764400000000
        await ds.undoLastMigration({ transaction: 'each' }); // ClientSeal1764300000000
        await ds.undoLastMigration({ transaction: 'each' }); // KeySetVersion1764200000000
        const left = (await ds.query(
          kind === 'SQLite'
            ? "SELECT name FROM sqlite_master WHERE name LIKE '%key_set%' OR name LIKE 'keys_changed%'"
            : "SELECT tgname AS name FROM pg_trigger WHERE tgname LIKE 'keys_changed%' UNION ALL SELECT tablename FROM pg_tables WHERE tablename = 'key_set_version'",
        )) as unknown[];
        assert.deepEqual(left, []);
        // Without its triggers and table, key writes still work (nothing points at the counter).
        await ds.query(`UPDATE keys SET revoked_reason = ${p(1)} WHERE id = ${p(2)}`, [
          'after revert',
          KEY_ROW.id,
        ]);
      } finally {
        await ds.destroy();
      }
      // Migrated again, then the update trigger dropped (SQLite) or disabled (PostgreSQL) by
      // hand: no process opens the store, since its daemons would never see key updates.
      await (await openStore(url)).destroy();
      const tamper = dataSource(url, []);
      await tamper.initialize();
      await tamper.query(
        kind === 'SQLite'
          ? 'DROP TRIGGER keys_changed_update'
          : 'ALTER TABLE keys DISABLE TRIGGER keys_changed',
      );
      await tamper.destroy();
      await assert.rejects(openStore(url), (e: unknown) => {
        assert.ok(hasCode(e, 'STORE_ERROR'));
        assert.match((e as Error).message, /do not record .*updates of id, kid/);
        return true;
      });
    });

    it(`${kind}: adds the client seal column to a previous release's store, keeps its clients (unsealed), reverts`, async () => {
      let url: string;
      if (kind === 'SQLite') url = `sqlite:${join(dir, 'kw-clients.db')}`;
      else {
        pg ??= await startPostgres();
        url = await pg.createDatabase('migrations_clients');
      }
      const p = (n: number) => (kind === 'SQLite' ? '?' : `$${n}`);
      const client = {
        id: '00000000-0000-4000-8000-0000000000c1',
        name: 'legacy',
        secret_hash: 'scrypt$16384$8$1$salt$hash',
        grants: '{"demo":["sign"]}',
        created_at: 1,
        updated_at: 2,
      };
      const cols = Object.keys(client);
      const old = dataSource(url, BEFORE_CLIENT_SEAL);
      await old.initialize();
      await old.runMigrations({ transaction: 'each' });
      await old.query(
        `INSERT INTO clients (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`,
        Object.values(client),
      );
      await old.destroy();

      const ds = dataSource(url, MIGRATIONS);
      await ds.initialize();
      try {
        const applied = await ds.runMigrations({ transaction: 'each' });
        assert.deepEqual(
          applied.map((m) => m.name),
          ['ClientSeal1764300000000', 'ClientCertificate1764400000000', 'KeyChangeLog1764500000000'],
        );
        const rows = (await ds.query('SELECT id, name, grants, seal FROM clients')) as Record<
          string,
          unknown
        >[];
        assert.deepEqual(rows, [{ id: client.id, name: 'legacy', grants: client.grants, seal: null }]);
        await ds.query(`UPDATE clients SET seal = ${p(1)} WHERE id = ${p(2)}`, [
          '{"kid":"k","sig":"s"}',
          client.id,
        ]);
        await ds.undoLastMigration({ transaction: 'each' }); // KeyChangeLog1764500000000
        await ds.undoLastMigration({ transaction: 'each' });
        await ds.undoLastMigration({ transaction: 'each' });
        const reverted = (await ds.query('SELECT * FROM clients')) as Record<string, unknown>[];
        assert.equal(reverted.length, 1);
        assert.ok(!('seal' in reverted[0]!), 'the seal column is gone after the revert');
      } finally {
        await ds.destroy();
      }
      // The store opens (and migrates again) as keywarden opens it: the row is back, unsealed.
      const store = await openStore(url);
      try {
        const rows = (await store.query('SELECT name, seal FROM clients')) as Record<string, unknown>[];
        assert.deepEqual(rows, [{ name: 'legacy', seal: null }]);
      } finally {
        await store.destroy();
      }
    });

    it(`${kind}: adds the certificate binding to a previous release's store: clients kept with their seals, secret optional, one client per key, reverts`, async () => {
      let url: string;
      if (kind === 'SQLite') url = `sqlite:${join(dir, 'kw-client-certs.db')}`;
      else {
        pg ??= await startPostgres();
        url = await pg.createDatabase('migrations_client_certs');
      }
      const p = (n: number) => (kind === 'SQLite' ? '?' : `$${n}`);
      const insert = (ds: DataSource, row: Record<string, unknown>) => {
        const cols = Object.keys(row);
        return ds.query(
          `INSERT INTO clients (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`,
          Object.values(row),
        );
      };
      const sealed = {
        id: '00000000-0000-4000-8000-0000000000d1',
        name: 'sealed',
        secret_hash: 'scrypt$16384$8$1$salt$hash',
        grants: '{"demo":["sign"]}',
        created_at: 1,
        updated_at: 2,
        seal: '{"kid":"k","sig":"s"}',
      };
      const old = dataSource(url, BEFORE_CLIENT_CERTIFICATE);
      await old.initialize();
      await old.runMigrations({ transaction: 'each' });
      await insert(old, sealed);
      await old.destroy();

      const ds = dataSource(url, MIGRATIONS);
      await ds.initialize();
      try {
        const applied = await ds.runMigrations({ transaction: 'each' });
        assert.deepEqual(
          applied.map((m) => m.name),
          ['ClientCertificate1764400000000', 'KeyChangeLog1764500000000'],
        );
        const rows = (await ds.query('SELECT * FROM clients')) as Record<string, unknown>[];
        assert.equal(rows.length, 1);
        assert.deepEqual(
          { ...rows[0], created_at: Number(rows[0]!.created_at), updated_at: Number(rows[0]!.updated_at) },
          { ...sealed, cert_spki_sha256: null },
        );
        const bound = (n: number) => ({
          ...sealed,
          id: `00000000-0000-4000-8000-0000000000e${n}`,
          name: `bound-${n}`,
          secret_hash: null,
          cert_spki_sha256: 'CTCGG8jxGc_NvuSV5-7jLdIIJTobL1tBUw7sp-76VSM',
        });
        await insert(ds, bound(1));
        // One key names one client; a name is still unique (SQLite rebuilt the table).
        await assert.rejects(insert(ds, bound(2)));
        await assert.rejects(insert(ds, { ...bound(3), name: 'sealed', cert_spki_sha256: null }));
        await ds.undoLastMigration({ transaction: 'each' }); // KeyChangeLog1764500000000
        await ds.undoLastMigration({ transaction: 'each' });
        const reverted = (await ds.query('SELECT * FROM clients')) as Record<string, unknown>[];
        assert.deepEqual(
          reverted.map((r) => r.name),
          ['sealed'],
          'clients without a secret cannot exist in the older schema',
        );
        assert.ok(!('cert_spki_sha256' in reverted[0]!));
        await assert.rejects(
          insert(ds, { ...sealed, id: '00000000-0000-4000-8000-0000000000f1', name: 'x', secret_hash: null }),
        );
      } finally {
        await ds.destroy();
      }
    });

    it(`${kind}: logs which key row each version changed on a previous release's store, one version per row; reverts`, async () => {
      let url: string;
      if (kind === 'SQLite') url = `sqlite:${join(dir, 'kw-key-changes.db')}`;
      else {
        pg ??= await startPostgres();
        url = await pg.createDatabase('migrations_key_changes');
      }
      const p = (n: number) => (kind === 'SQLite' ? '?' : `$${n}`);
      const cols = Object.keys(KEY_ROW);
      const insert = `INSERT INTO keys (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`;
      const second = { ...KEY_ROW, id: '00000000-0000-4000-8000-000000000002', kid: 'kid-2' };
      const old = dataSource(url, BEFORE_KEY_CHANGE_LOG);
      await old.initialize();
      await old.runMigrations({ transaction: 'each' });
      await old.query(insert, Object.values(KEY_ROW));
      await old.destroy();

      const ds = dataSource(url, MIGRATIONS);
      await ds.initialize();
      try {
        const applied = await ds.runMigrations({ transaction: 'each' });
        assert.deepEqual(
          applied.map((m) => m.name),
          ['KeyChangeLog1764500000000'],
        );
        const changes = (known: string) =>
          ds.transaction(async (m) => changedKeyIds(m, known, await readKeySetVersion(m)));
        // The version the previous release left has no entry: the log cannot vouch for it.
        const upgraded = await readKeySetVersion(ds);
        await ds.query(insert, Object.values(second));
        assert.equal(await changes(upgraded), null);

        const held = await readKeySetVersion(ds);
        // One statement writing two rows: one version each, both ids logged.
        await ds.query(`UPDATE keys SET revoked_at = ${p(1)}, revoked_reason = ${p(2)}`, [5, 'test']);
        await ds.query(`UPDATE keys SET last_state = ${p(1)} WHERE id = ${p(2)}`, ['revoked', KEY_ROW.id]);
        assert.deepEqual((await changes(held))?.sort(), [KEY_ROW.id, second.id]);
        assert.equal(Number(held.split(':')[0]) + 2, Number((await readKeySetVersion(ds)).split(':')[0]));
        // An id changed by an update: both the old and the new id are named.
        const moved = await readKeySetVersion(ds);
        const newId = '00000000-0000-4000-8000-000000000003';
        await ds.query(`UPDATE keys SET id = ${p(1)} WHERE id = ${p(2)}`, [newId, second.id]);
        assert.deepEqual((await changes(moved))?.sort(), [second.id, newId].sort());
        // A deletion is logged; on PostgreSQL a TRUNCATE (no rows) makes the log refuse to vouch.
        const beforeDelete = await readKeySetVersion(ds);
        await ds.query(`DELETE FROM keys WHERE id = ${p(1)}`, [newId]);
        assert.deepEqual(await changes(beforeDelete), [newId]);
        if (kind === 'PostgreSQL') {
          const beforeTruncate = await readKeySetVersion(ds);
          await ds.query('TRUNCATE keys');
          assert.equal(await changes(beforeTruncate), null);
          await ds.query(insert, Object.values(KEY_ROW));
        }

        await ds.undoLastMigration({ transaction: 'each' });
        const left = (await ds.query(
          kind === 'SQLite'
            ? "SELECT name FROM sqlite_master WHERE name = 'key_changes'"
            : "SELECT tablename FROM pg_tables WHERE tablename = 'key_changes'",
        )) as unknown[];
        assert.deepEqual(left, []);
        // The previous triggers are back: writes still move the version.
        const reverted = await readKeySetVersion(ds);
        await ds.query(`UPDATE keys SET revoked_reason = ${p(1)} WHERE id = ${p(2)}`, [
          'after revert',
          KEY_ROW.id,
        ]);
        assert.notEqual(await readKeySetVersion(ds), reverted);
        const installed = await installedKeyTriggers(ds);
        assert.ok(installed.insert && installed.delete);
        assert.deepEqual([...installed.updateColumns].sort(), versionedKeyColumns().sort());
      } finally {
        await ds.destroy();
      }
    });
  }
});
