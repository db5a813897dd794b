/**
 * The store's write check behind `/readyz`'s `store-write` (SqlStore.writable): a write that
 * commits and leaves nothing behind, on SQLite and PostgreSQL, and a store that reads but refuses
 * writes (a PostgreSQL database switched to read-only, a SQLite file opened read-only) is reported
 * with the database's own error. The full-disk case: test/e2e/store-full.test.ts.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { openStore } from '../../src/store/data-source';
import { SqlStore } from '../../src/store/sql-store';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

const noAudit = async () => undefined;

describe('SqlStore.writable (readiness store-write)', function () {
  this.timeout(120_000);

  describe('SQLite', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'keywarden-writable-'));
    });
    after(async () => rm(dir, { recursive: true, force: true }));

    it('commits a probe that leaves no row behind', async () => {
      const ds = await openStore(`sqlite:${join(dir, 'rw.db')}`);
      try {
        const r = await new SqlStore(ds, noAudit).writable();
        assert.equal(r.ok, true, r.detail);
        assert.deepEqual(await ds.query('SELECT scope FROM scope_locks'), []);
      } finally {
        await ds.destroy();
      }
    });

    it('a store opened read-only answers reads, and writable() says it cannot be written', async () => {
      const file = join(dir, 'ro.db');
      await (await openStore(`sqlite:${file}`)).destroy();
      // The file opened read-only, as on a read-only mount (a file mode does not stop root).
      const ds = new DataSource({ type: 'better-sqlite3', database: file, readonly: true });
      await ds.initialize();
      try {
        const store = new SqlStore(ds, noAudit);
        assert.equal((await store.ping()).ok, true);
        const r = await store.writable();
        assert.equal(r.ok, false);
        assert.match(r.detail, /cannot be written: .*readonly/i);
      } finally {
        await ds.destroy();
      }
    });
  });

  describe('PostgreSQL', () => {
    let pg: TestPostgres;
    before(async () => {
      pg = await startPostgres();
    });
    after(async () => pg?.stop());

    it('commits a probe that leaves no row behind; a read-only database is reported', async () => {
      const url = await pg.createDatabase('writable');
      const ds = await openStore(url);
      try {
        const store = new SqlStore(ds, noAudit);
        const ok = await store.writable();
        assert.equal(ok.ok, true, ok.detail);
        assert.deepEqual(await ds.query('SELECT scope FROM scope_locks'), []);
        // What a primary turned standby, or a database an operator froze, looks like: new
        // connections are read-only (a running daemon's pool reconnects the same way).
        const db = (await ds.query('SELECT current_database() AS d')) as { d: string }[];
        await ds.query(`ALTER DATABASE "${db[0]!.d}" SET default_transaction_read_only = on`);
        await ds.destroy();
        const ro = new DataSource({ type: 'postgres', url });
        await ro.initialize();
        try {
          const readOnly = new SqlStore(ro, noAudit);
          assert.equal((await readOnly.ping()).ok, true);
          const r = await readOnly.writable();
          assert.equal(r.ok, false);
          assert.match(r.detail, /cannot be written: .*read-only transaction/);
        } finally {
          await ro.destroy();
        }
      } finally {
        if (ds.isInitialized) await ds.destroy();
      }
    });
  });
});
