import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { DataSource } from 'typeorm';
import { createDataSource, openStore } from '../../src/store/data-source';
import { advisoryKey, PgAdvisoryScopeLock, SqliteLeaseScopeLock } from '../../src/store/scope-lock';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

const ROOT = resolve(__dirname, '..', '..');

/** A promise with its resolve function, to hold a lock until the test lets go. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** Holds the lock until `release()`; resolves `held` once fn runs. */
function hold(lock: { tryRun: PgAdvisoryScopeLock['tryRun'] }, scope: string) {
  const entered = gate();
  const leave = gate();
  const result = lock.tryRun(scope, async () => {
    entered.open();
    await leave.wait;
    return 'done';
  });
  return { held: Promise.race([entered.wait, result.then(() => undefined)]), release: leave.open, result };
}

/** The PostgreSQL backend pid holding the session advisory lock of `scope`, if any. */
async function advisoryHolder(ds: DataSource, scope: string): Promise<number | null> {
  const key = BigInt(advisoryKey(scope));
  const unsigned = BigInt.asUintN(64, key);
  const rows = (await ds.query(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND classid::bigint = $1 AND objid::bigint = $2`,
    [(unsigned >> 32n).toString(), (unsigned & 0xffffffffn).toString()],
  )) as { pid: number }[];
  return rows[0]?.pid ?? null;
}

describe('scope locks', function () {
  this.timeout(60_000);

  describe('PostgreSQL advisory lock (real server)', () => {
    let pg: TestPostgres;
    let ds: DataSource;
    let other: DataSource;
    let url: string;

    before(async () => {
      pg = await startPostgres();
      url = await pg.createDatabase('locks');
      ds = await openStore(url);
      other = await openStore(url); // a second daemon's pool
    });
    after(async () => {
      await ds?.destroy().catch(() => undefined);
      await other?.destroy().catch(() => undefined);
      await pg?.stop();
    });

    it('excludes a second holder on another connection, in this pool and in another process pool', async () => {
      const a = new PgAdvisoryScopeLock(ds);
      const h = hold(a, 'demo');
      await h.held;
      assert.deepEqual(await a.tryRun('demo', async () => 'second'), { ran: false });
      assert.deepEqual(await new PgAdvisoryScopeLock(other).tryRun('demo', async () => 'x'), { ran: false });
      // Another scope is not affected.
      assert.deepEqual(await a.tryRun('other-scope', async () => 'y'), { ran: true, value: 'y' });
      h.release();
      assert.deepEqual(await h.result, { ran: true, value: 'done' });
      assert.deepEqual(await new PgAdvisoryScopeLock(other).tryRun('demo', async () => 'z'), {
        ran: true,
        value: 'z',
      });
      assert.equal(await advisoryHolder(ds, 'demo'), null, 'lock released after the run');
    });

    it('is not re-entrant the way a lock taken through the pool would be (the bug it avoids)', async () => {
      // The naive way: pg_try_advisory_lock through pooled queries. With one pooled connection
      // (as happens whenever the pool hands back the same idle client) the second "holder"
      // gets the lock too, because session advisory locks are re-entrant per connection.
      const naive = createDataSource(url);
      (naive.options.extra as { max: number }).max = 1;
      await naive.initialize();
      try {
        const key = advisoryKey('naive');
        const first = (await naive.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])) as {
          ok: boolean;
        }[];
        const second = (await naive.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])) as {
          ok: boolean;
        }[];
        assert.equal(first[0]?.ok, true);
        assert.equal(second[0]?.ok, true, 'pooled advisory locks are re-entrant: two "holders"');
      } finally {
        await naive.destroy();
      }
      // The scope lock holds a dedicated connection per run: a concurrent run on the very same
      // pool and lock object is refused.
      const lock = new PgAdvisoryScopeLock(ds);
      const runs = await Promise.all(
        Array.from({ length: 5 }, () =>
          lock.tryRun('reentry', async () => {
            await new Promise((r) => setTimeout(r, 200));
            return 1;
          }),
        ),
      );
      assert.equal(runs.filter((r) => r.ran).length, 1, JSON.stringify(runs));
    });

    it("is released when the holder's connection dies (pg_terminate_backend), and the holder survives", async () => {
      const a = new PgAdvisoryScopeLock(other);
      const h = hold(a, 'dying');
      await h.held;
      const pid = await advisoryHolder(ds, 'dying');
      assert.ok(pid, 'holder visible in pg_locks');
      const b = new PgAdvisoryScopeLock(ds);
      assert.deepEqual(await b.tryRun('dying', async () => 'x'), { ran: false });
      const killed = (await ds.query('SELECT pg_terminate_backend($1) AS ok', [pid])) as { ok: boolean }[];
      assert.equal(killed[0]?.ok, true);
      const deadline = Date.now() + 5000;
      let taken: Awaited<ReturnType<typeof b.tryRun<string>>> = { ran: false };
      while (!taken.ran && Date.now() < deadline) {
        taken = await b.tryRun('dying', async () => 'taken over');
        if (!taken.ran) await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(taken, { ran: true, value: 'taken over' });
      // The old holder's run finishes without crashing the process, and its pool still works.
      h.release();
      assert.deepEqual(await h.result, { ran: true, value: 'done' });
      assert.deepEqual(await other.query('SELECT 1 AS one'), [{ one: 1 }]);
      assert.deepEqual(await a.tryRun('dying', async () => 'again'), { ran: true, value: 'again' });
    });
  });

  describe('SQLite lease (real processes)', () => {
    let dir: string;
    let url: string;
    let ds: DataSource;
    const children: ChildProcess[] = [];

    /** Another process that takes the lease of `scope` and holds it until killed. */
    function holderProcess(scope: string): Promise<ChildProcess> {
      const code = `
        const { openStore } = require('./src/store/data-source');
        const { SqliteLeaseScopeLock } = require('./src/store/scope-lock');
        (async () => {
          const ds = await openStore(${JSON.stringify(url)});
          const r = await new SqliteLeaseScopeLock(ds, 600).tryRun(${JSON.stringify(scope)}, async () => {
            process.stdout.write('held\\n');
            await new Promise(() => setInterval(() => undefined, 60_000)); // hold until killed
          });
          if (!r.ran) process.stdout.write('busy\\n');
        })();`;
      const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', code], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      return new Promise((res, rej) => {
        let out = '';
        let err = '';
        child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('held\n')) res(child);
          if (out.includes('busy\n')) rej(new Error('holder process found the lease busy'));
        });
        child.once('exit', (c) => rej(new Error(`holder exited ${c}: ${err}`)));
      });
    }

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'keywarden-lease-'));
      url = `sqlite:${join(dir, 'keywarden.db')}`;
      ds = await openStore(url);
    });
    after(async () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await ds?.destroy().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    });

    it('excludes a second process, and is taken over at once when the holder process is SIGKILLed', async () => {
      const child = await holderProcess('demo');
      const lock = new SqliteLeaseScopeLock(ds, 30_000);
      assert.deepEqual(await lock.tryRun('demo', async () => 'x'), { ran: false });
      // The holder renews its 600 ms lease while it runs: still excluded well past one lease.
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(await lock.tryRun('demo', async () => 'x'), { ran: false });
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      const t0 = Date.now();
      assert.deepEqual(await lock.tryRun('demo', async () => 'taken'), { ran: true, value: 'taken' });
      assert.ok(Date.now() - t0 < 1000, 'dead holder taken over without waiting for the lease');
    });

    it('a lease of a live holder on another host is honoured until it expires, then taken over', async () => {
      const lock = new SqliteLeaseScopeLock(ds, 30_000);
      await ds.query('INSERT INTO scope_locks (scope, holder, expires_at_ms) VALUES (?, ?, ?)', [
        'remote',
        'some-other-host:1234:abc',
        Date.now() + 60_000,
      ]);
      assert.deepEqual(await lock.tryRun('remote', async () => 'x'), { ran: false });
      await ds.query('UPDATE scope_locks SET expires_at_ms = ? WHERE scope = ?', [Date.now() - 1, 'remote']);
      assert.deepEqual(await lock.tryRun('remote', async () => 'x'), { ran: true, value: 'x' });
      assert.deepEqual(await ds.query("SELECT * FROM scope_locks WHERE scope = 'remote'"), [], 'released');
    });

    it('in one process, concurrent runs of a scope are serialised too', async () => {
      const lock = new SqliteLeaseScopeLock(ds, 30_000);
      const runs = await Promise.all(
        Array.from({ length: 4 }, () =>
          lock.tryRun('local', async () => {
            await new Promise((r) => setTimeout(r, 100));
            return 1;
          }),
        ),
      );
      assert.equal(runs.filter((r) => r.ran).length, 1);
    });
  });
});
