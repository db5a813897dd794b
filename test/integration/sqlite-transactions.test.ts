import * as assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DataSource } from 'typeorm';
import { openStore } from '../../src/store/data-source';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * better-sqlite3 gives a process one connection; without serialisation TypeORM would nest a
 * second concurrent transaction inside the first as a savepoint, and one scope's rollback
 * would take another scope's committed work with it.
 */
describe('SQLite store: concurrent transactions in one process stay independent', () => {
  let dir: string;
  let ds: DataSource;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keywarden-sqlite-tx-'));
    ds = await openStore(`sqlite:${join(dir, 'k.db')}`);
  });
  after(async () => {
    await ds.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  const insertLock = (m: { query(q: string, p: unknown[]): Promise<unknown> }, scope: string) =>
    m.query('INSERT INTO scope_locks (scope, holder, expires_at_ms) VALUES (?, ?, ?)', [scope, 'test', 0]);

  it("a failing transaction does not roll back a concurrent one's commit, nor keep its own writes", async () => {
    const failing = ds.transaction(async (m) => {
      await insertLock(m, 'a');
      await sleep(30); // the other transaction starts while this one is open
      throw new Error('boom');
    });
    const succeeding = (async () => {
      await sleep(5);
      await ds.transaction(async (m) => insertLock(m, 'b'));
    })();
    await assert.rejects(failing, /boom/);
    await succeeding;
    const rows = (await ds.query('SELECT scope FROM scope_locks ORDER BY scope')) as { scope: string }[];
    assert.deepEqual(
      rows.map((r) => r.scope),
      ['b'],
    );
  });
});
