/**
 * The scheduler's in-memory check (src/lifecycle/reconcile-due.ts) on the real lifecycle
 * (SoftHSM2, SQLite, FakeClock): a heartbeat pass skips the lock and the store only for scopes with
 * nothing due, and still catches everything the heartbeat exists for: a decision whose timer did not
 * fire, a state transition to record, a key past its destroy time, a `generating` leftover, a row
 * written in the store behind the daemon's back, another daemon's work, and a scope whose lock
 * another process holds. Each pass here is what one cron tick does (Scheduler.pass).
 */
import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import type { ReconcileReport } from '../../src/lifecycle';
import type { KeyRecord } from '../../src/policy/key';
import { Scheduler, type PassCounts } from '../../src/scheduler/scheduler';
import { openStore } from '../../src/store/data-source';
import { SqliteLeaseScopeLock } from '../../src/store/scope-lock';
import { signingKeyOf } from '../helpers/daemon';
import { startTestRuntime, testConfigDocument, type TestRuntime } from '../helpers/runtime';
import { validateConfig } from '../../src/config/validate-config';
import { storeWriter, type StoreWriter } from '../helpers/store-tamper';

const MINUTE = 60;

describe('reconcile heartbeat: the in-memory check (integration, SoftHSM2 + SQLite + FakeClock)', function () {
  this.timeout(120_000);
  let t: TestRuntime;
  let scheduler: Scheduler;
  let sql: StoreWriter;
  /** Every full reconcile the scheduler ran, in order, with its report. */
  let runs: ReconcileReport[];
  let skipped: string[];
  const scopes = ['alpha', 'beta'];

  /** One cron tick over both scopes; the full reconciles it queued have run when it resolves. */
  const heartbeat = async (): Promise<PassCounts> => {
    runs = [];
    skipped = [];
    return scheduler.pass(scopes, 'heartbeat');
  };
  const ranFor = (scope: string) => runs.filter((r) => r.scope === scope);
  const doneIn = (scope: string) => ranFor(scope).flatMap((r) => r.done.map((d) => d.action));
  const events = async (scope: string) =>
    (await t.ctx.auditRecords.tail({ scope, limit: 10_000 })).map((r) => `${r.type} ${r.kid ?? ''}`);
  const keysOf = async (scope: string): Promise<KeyRecord[]> => t.ctx.keys.listByScope(scope);

  /** A further pass finds nothing due anywhere: no lock, no store, no reconcile. */
  const assertQuiet = async () => {
    const counts = await heartbeat();
    assert.deepEqual(counts, { checked: 2, skipped: 2, queued: 0 });
    assert.deepEqual(runs, []);
    assert.deepEqual(skipped.sort(), scopes);
    for (const s of scopes) {
      // The full reconcile agrees: it has nothing to do either.
      const r = await t.kw.reconcile(s);
      assert.deepEqual(
        { ran: r.ran, done: r.done, errors: r.errors },
        { ran: true, done: [], errors: [] },
        s,
      );
    }
  };

  before(async () => {
    // destroyAfter 7m keeps the first key's destruction (expiry 15m + 7m) apart from other decisions.
    t = await startTestRuntime(scopes.map((name) => ({ name, policy: { destroyAfter: '7m' } })));
    sql = storeWriter(t.rt.ds);
    scheduler = new Scheduler(
      t.kw,
      { onReport: (r) => runs.push(r), onSkipped: (s) => skipped.push(s) },
      { jobs: [] },
    );
  });
  after(async () => {
    await scheduler?.stop();
    await t?.close();
  });

  it('a scope without keys is due (a key to create); the pass after skips every scope', async () => {
    const counts = await heartbeat();
    assert.deepEqual(counts, { checked: 2, skipped: 0, queued: 2 });
    for (const s of scopes) assert.deepEqual(doneIn(s), ['create']);
    await assertQuiet();
  });

  it('a decision whose timer did not fire (successor due) is caught by the next pass', async () => {
    t.clock.advanceSeconds(8 * MINUTE + 1); // activeFor 10m - prepublish 2m
    assert.deepEqual(t.kw.reconcileVerdict('alpha'), { due: true, reason: 'action-due' });
    const counts = await heartbeat();
    assert.equal(counts.queued, 2);
    for (const s of scopes) assert.deepEqual(doneIn(s), ['create']);
    for (const s of scopes) assert.equal((await keysOf(s)).length, 2);
    await assertQuiet();
  });

  it('a state transition to record (the successor activates, the first key retires) is caught', async () => {
    const first = await signingKeyOf(t.ctx, 'alpha');
    t.clock.advanceSeconds(2 * MINUTE); // 10m + 1s: nothing to create or destroy, only states moved
    assert.deepEqual(t.kw.reconcileVerdict('alpha'), { due: true, reason: 'transition-to-record' });
    await heartbeat();
    for (const s of scopes) {
      assert.equal(ranFor(s).length, 1);
      assert.deepEqual(doneIn(s), []);
    }
    const successor = await signingKeyOf(t.ctx, 'alpha');
    assert.notEqual(successor.kid, first.kid);
    const log = await events('alpha');
    assert.ok(log.includes(`key.retired ${first.kid}`), log.join('\n'));
    assert.ok(log.includes(`key.activated ${successor.kid}`), log.join('\n'));
    await assertQuiet();
  });

  it("another daemon's recording is learned from one full reconcile, which records nothing twice", async () => {
    t.clock.advanceSeconds(5 * MINUTE); // 15m + 1s: the first key expires
    const first = (await keysOf('alpha')).find((k) => k.expiresAt <= t.clock.now()) as KeyRecord;
    // Another daemon recorded alpha's expiry already (its audit record is its own business).
    await sql.update(first.id, { last_state: 'expired' });
    const before = (await events('alpha')).filter((e) => e.startsWith('key.expired')).length;
    await heartbeat();
    assert.equal(ranFor('alpha').length, 1, 'this process had not seen the recording: one full run');
    assert.equal((await events('alpha')).filter((e) => e.startsWith('key.expired')).length, before);
    assert.ok((await events('beta')).includes(`key.expired ${(await keysOf('beta'))[0]!.kid}`));
    await assertQuiet();
  });

  it('a key past its destroy time is caught (and only that is done)', async () => {
    t.clock.advanceSeconds(3 * MINUTE); // 18m + 1s: the successor's successor is due
    await heartbeat();
    for (const s of scopes) assert.deepEqual(doneIn(s), ['create']);
    t.clock.advanceSeconds(2 * MINUTE); // 20m + 1s: hand-over, transitions
    await heartbeat();
    await assertQuiet();
    t.clock.advanceSeconds(2 * MINUTE); // 22m + 1s: the first key's object is due for destruction
    assert.deepEqual(t.kw.reconcileVerdict('alpha'), { due: true, reason: 'action-due' });
    await heartbeat();
    for (const s of scopes) assert.deepEqual(doneIn(s), ['destroy']);
    const first = (await keysOf('alpha')).find((k) => k.destroyedAt !== null);
    assert.ok(first, 'the first key is marked destroyed');
    await assertQuiet();
  });

  it('a generating leftover (a crashed generation) is resolved', async () => {
    const current = await signingKeyOf(t.ctx, 'beta');
    await t.ctx.keys.insertGenerating(
      {
        ...current,
        id: randomUUID(),
        kid: null,
        status: 'generating',
        publicJwk: null,
        backendRef: {
          backend: 'hsm',
          ref: { ...current.backendRef.ref, id: randomUUID().replace(/-/g, '') },
        },
      },
      t.clock.now(),
    );
    await heartbeat();
    assert.deepEqual(ranFor('alpha'), []);
    assert.deepEqual(
      ranFor('beta').flatMap((r) => r.done.map((d) => `${d.action} ${d.detail}`)),
      ['resolve-generating removed'],
    );
    assert.equal((await keysOf('beta')).filter((k) => k.status === 'generating').length, 0);
    await assertQuiet();
  });

  it('a row changed in the store behind the daemon’s back (the signing key revoked by SQL) is caught', async () => {
    const signing = await signingKeyOf(t.ctx, 'alpha');
    await sql.update(signing.id, { revoked_at: t.clock.now().getTime(), revoked_reason: 'by hand' });
    // No reload has run yet: the pass's own refresh must see the write.
    await heartbeat();
    assert.deepEqual(ranFor('beta'), []);
    assert.ok(doneIn('alpha').includes('create'), JSON.stringify(runs));
    const replacement = await signingKeyOf(t.ctx, 'alpha');
    assert.notEqual(replacement.kid, signing.kid);
    assert.ok((await events('alpha')).includes(`key.revoked ${signing.kid}`));
    await assertQuiet();
  });

  describe('a scope whose lock another process holds', () => {
    let other: DataSource;
    let release: () => void;
    let held: Promise<unknown>;

    before(async () => {
      // A second connection and lease lock on the same SQLite file: another daemon, as the store sees it.
      other = await openStore(t.config.store.url);
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      held = new SqliteLeaseScopeLock(other, 60_000).tryRun('alpha', async () => {
        entered();
        await new Promise<void>((r) => (release = r));
      });
      await inside;
    });
    after(async () => {
      release?.();
      await held;
      await other?.destroy();
    });

    it('with nothing due it is skipped without touching the lock', async () => {
      const counts = await heartbeat();
      assert.deepEqual(counts, { checked: 2, skipped: 2, queued: 0 });
    });

    it('with something due it goes to the full reconcile, which leaves it to the holder; after release it runs', async () => {
      t.clock.advanceSeconds(8 * MINUTE + 1); // past the replacement's successor due time
      await heartbeat();
      assert.deepEqual(
        ranFor('alpha').map((r) => ({ ran: r.ran, done: r.done })),
        [{ ran: false, done: [] }],
      );
      assert.deepEqual(doneIn('beta'), ['create']);
      release();
      await held;
      await heartbeat();
      assert.deepEqual(doneIn('alpha'), ['create']);
      assert.deepEqual(ranFor('beta'), []);
    });
  });

  it('a pass whose key reload fails reconciles every scope in full (fail safe)', async () => {
    const refresh = t.ctx.cache.refresh.bind(t.ctx.cache);
    t.ctx.cache.refresh = () => Promise.reject(new Error('store away'));
    try {
      const counts = await heartbeat();
      assert.deepEqual(counts, { checked: 2, skipped: 0, queued: 2 });
    } finally {
      t.ctx.cache.refresh = refresh;
    }
  });
});

describe('scheduler reconfigure: timers from the key cache (integration, SoftHSM2 + SQLite + FakeClock)', function () {
  this.timeout(120_000);
  let t: TestRuntime;
  let scheduler: Scheduler;
  let release: (() => void) | null = null;

  before(async () => {
    t = await startTestRuntime([{ name: 'alpha' }, { name: 'beta' }]);
    scheduler = new Scheduler(t.kw, {}, { jobs: [] });
    await scheduler.start();
  });
  after(async () => {
    await scheduler?.stop();
    release?.();
    await t?.close();
  });

  it('runs only the added scope; the others are checked in memory, not asked of the store one by one', async () => {
    const doc = testConfigDocument(t.token, [{ name: 'alpha' }, { name: 'beta' }, { name: 'gamma' }]);
    const gen = await t.rt.reconfigure(validateConfig(doc, { source: '<test>', baseDir: t.token.dir }));
    release = gen.release;
    const reconciled: string[] = [];
    const asked: string[] = [];
    const reconcile = gen.keywarden.reconcile.bind(gen.keywarden);
    gen.keywarden.reconcile = async (scope, actor) => {
      reconciled.push(scope);
      return reconcile(scope, actor);
    };
    const nextDecisionAt = gen.keywarden.nextDecisionAt.bind(gen.keywarden);
    gen.keywarden.nextDecisionAt = async (scope) => {
      asked.push(scope);
      return nextDecisionAt(scope);
    };
    await scheduler.reconfigure(gen.keywarden, [], ['gamma']);
    assert.deepEqual(reconciled, ['gamma']);
    // gamma's run arms its timer from the store; alpha and beta were armed from the cache.
    assert.deepEqual(asked, ['gamma']);
    assert.equal((await signingKeyOf(gen.ctx, 'gamma')).scope, 'gamma');
    assert.deepEqual(gen.keywarden.reconcileVerdict('alpha').due, false);
  });
});
