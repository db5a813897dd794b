import * as assert from 'node:assert/strict';
import { reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

/**
 * #18 item 4: an operator rotation in the current key's last prepublish window, with no successor
 * yet (the daemon was down), left the scope without a signing key until the new key activated; the
 * reconcile that followed filled the gap with a key active at once, and from then on several keys
 * showed as `active`. On the real stores (SQLite, PostgreSQL), a real SoftHSM2 token, a fake clock.
 */
for (const storeKind of ['sqlite', 'postgres'] as const) {
  describe(`operator rotation leaves no gap and one active key (${storeKind})`, function () {
    this.timeout(180_000);
    let pg: TestPostgres | undefined;
    let t: TestRuntime;

    before(async () => {
      if (storeKind === 'postgres') pg = await startPostgres();
    });
    after(async () => pg?.stop());
    beforeEach(async () => {
      const storeUrl = pg ? await pg.createDatabase('nogap') : undefined;
      t = await startTestRuntime([{ name: 'consumer' }], storeUrl ? { storeUrl } : {});
      await reconcileScope(t.ctx, 'consumer');
    });
    afterEach(async () => t.close());

    const sign = () => t.kw.sign('consumer', { claims: { sub: 'alice', aud: 'consumer-api' } });
    /** What keys list shows: kid -> state, and the one signing kid by keys list and by /metrics. */
    const shown = async () => {
      const rows = await t.kw.listKeys('consumer');
      const status = t.kw.scopesOverview()[0]!.status;
      return {
        active: rows.filter((r) => r.state === 'active').map((r) => r.record.kid),
        states: rows.map((r) => r.state),
        metricActive: status.keysByState?.active,
      };
    };

    it('a rotation in the last prepublish window: the new key takes over at retireAt, reconcile adds nothing', async () => {
      const [a] = await t.ctx.keys.listByScope('consumer');
      // SHORT_POLICY: prepublish 2m, activeFor 10m. 30 s before retirement, no successor.
      t.clock.set(new Date(a!.retireAt.getTime() - 30_000));
      const b = await t.kw.rotate('consumer', 'test');
      assert.ok(
        b.activateAt.getTime() <= a!.retireAt.getTime(),
        `the new key activates at ${b.activateAt.toISOString()}, after the old one retires at ${a!.retireAt.toISOString()}`,
      );

      // Every instant around the hand-over has a signing key, and the scheduler's reconcile at each
      // of them (as a daemon coming back would run it) creates nothing.
      const instants = [-30_000, -1, 0, 1, 500, 30_000, 89_999, 90_000, 90_001, 120_000].map(
        (d) => new Date(a!.retireAt.getTime() + d),
      );
      for (const when of instants) {
        t.clock.set(when);
        const r = await reconcileScope(t.ctx, 'consumer');
        assert.deepEqual(
          r.done.filter((d) => d.action === 'create'),
          [],
          `reconcile at ${when.toISOString()} created a key`,
        );
        const { kid } = await sign();
        const s = await shown();
        assert.deepEqual(s.active, [kid], `at ${when.toISOString()}: shown ${JSON.stringify(s.states)}`);
        assert.equal(s.metricActive, 1);
        assert.equal(kid, when < a!.retireAt ? a!.kid : b.kid);
      }
      assert.equal((await t.ctx.keys.listByScope('consumer')).length, 2);
    });

    it('a rotation early in the key life: the old key shows as superseded, not active, once the new one signs', async () => {
      const [a] = await t.ctx.keys.listByScope('consumer');
      t.clock.set(new Date(a!.activateAt.getTime() + 60_000));
      const b = await t.kw.rotate('consumer', 'test');
      assert.equal(b.activateAt.getTime() - t.clock.now().getTime(), 120_000); // the full prepublish
      let s = await shown();
      assert.deepEqual(s.active, [a!.kid]);
      assert.deepEqual(s.states.slice().sort(), ['active', 'pending']);
      t.clock.set(new Date(b.activateAt.getTime() + 1));
      assert.equal((await sign()).kid, b.kid);
      s = await shown();
      assert.deepEqual(s.active, [b.kid]);
      assert.deepEqual(s.states.slice().sort(), ['active', 'superseded']);
      assert.equal(s.metricActive, 1);
      assert.equal(t.kw.scopesOverview()[0]!.status.keysByState.superseded, 1);
      const details = await t.kw.scopeDetails('consumer');
      assert.deepEqual(details.keysByState, { active: 1, superseded: 1 });
    });
  });
}
