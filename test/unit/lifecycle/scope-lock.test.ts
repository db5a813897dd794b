/**
 * The scope lock as use cases use it (src/lifecycle/ports.ts runLocked, reconcile's tryRun), with
 * another process's hold simulated by MemoryScopeLock.hold: reconcile skips a held scope,
 * operator commands wait for it and give up with LOCK_BUSY after runLocked's 30 s (run here on
 * mocked timers, not waited for).
 */
import * as assert from 'node:assert/strict';
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import { mock } from 'node:test';
import { runLocked } from '../../../src/lifecycle/ports';
import { fakeRuntime, isCode, jwksKids, readyKeys, type FakeRuntime } from '../../helpers/fakes';

describe('scope lock on fakes', () => {
  let rt: FakeRuntime;
  let timersMocked = false;

  beforeEach(async () => {
    rt = await fakeRuntime({ scopes: [{ name: 'consumer' }, { name: 'enterprise' }] });
  });
  afterEach(async () => {
    if (timersMocked) mock.timers.reset();
    timersMocked = false;
    await rt.close();
  });

  it('reconcile skips a scope another process holds, touching nothing, and runs once it is free', async () => {
    const release = rt.lock.hold('consumer');
    const skipped = await rt.kw.reconcile('consumer');
    assert.deepEqual(skipped, { scope: 'consumer', ran: false, done: [], errors: [] });
    assert.deepEqual(await rt.store.keys.listAll(), []);
    assert.equal(rt.backend.calls.generate, 0);
    assert.deepEqual(rt.audit.events, []);
    // Other scopes are not blocked.
    const reports = await rt.kw.reconcileAll();
    assert.deepEqual(
      reports.map((r) => [r.scope, r.ran, r.done.length]),
      [
        ['consumer', false, 0],
        ['enterprise', true, 1],
      ],
    );
    release();
    const ran = await rt.kw.reconcile('consumer');
    assert.equal(ran.ran, true);
    assert.deepEqual(
      ran.done.map((d) => d.action),
      ['create'],
    );
  });

  it('rotate waits while the scope is held and rotates once it is released', async () => {
    await rt.kw.reconcile('consumer');
    const [old] = await readyKeys(rt, 'consumer');
    const release = rt.lock.hold('consumer');
    let settled = false;
    const rotation = rt.kw.rotate('consumer', 'operator').finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(settled, false, 'rotate did not wait for the lock');
    assert.ok((rt.lock.refusals.get('consumer') ?? 0) >= 2, 'rotate did not retry');
    assert.equal((await readyKeys(rt, 'consumer')).length, 1);
    release();
    const next = await rotation;
    assert.deepEqual(jwksKids(rt, 'consumer').sort(), [old!.kid, next.kid].sort());
  });

  for (const op of ['rotate', 'revoke'] as const) {
    it(`${op} gives up with LOCK_BUSY after 30 s of a held scope, and changes nothing`, async () => {
      await rt.kw.reconcile('consumer');
      const [key] = await readyKeys(rt, 'consumer');
      const rows = await rt.store.keys.listAll();
      const events = rt.audit.events.length;
      const release = rt.lock.hold('consumer');
      timersMocked = true;
      mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() });
      const started = Date.now();
      const outcome = (
        op === 'rotate' ? rt.kw.rotate('consumer', 'operator') : rt.kw.revoke(key!.kid!, 'leaked', 'operator')
      ).then(
        () => 'resolved',
        (e: unknown) => e,
      );
      let result: unknown;
      outcome.then((r) => (result = r));
      for (let i = 0; i < 400 && result === undefined; i++) {
        await nextMacrotask();
        mock.timers.tick(100);
      }
      const waited = Date.now() - started;
      mock.timers.reset();
      timersMocked = false;
      release();
      assert.ok(isCode('LOCK_BUSY')(result), `expected LOCK_BUSY, got ${String(result)}`);
      assert.ok(waited >= 30_000 && waited <= 31_000, `gave up after ${waited} ms`);
      assert.deepEqual(await rt.store.keys.listAll(), rows);
      assert.equal(rt.audit.events.length, events);
      assert.equal(rt.backend.calls.generate, 1);
    });
  }

  it('runLocked takes the lock as soon as it is free, and gives up with LOCK_BUSY after its timeout', async () => {
    const release = rt.lock.hold('consumer');
    await assert.rejects(
      runLocked(rt.lock, 'consumer', async () => 'never', 150),
      isCode('LOCK_BUSY'),
    );
    setTimeout(release, 120);
    assert.equal(await runLocked(rt.lock, 'consumer', async () => 'ran', 5_000), 'ran');
    assert.equal(rt.lock.isHeld('consumer'), false);
  });
});
