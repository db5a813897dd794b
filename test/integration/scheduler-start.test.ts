/**
 * The scheduler's start-up pass on the real lifecycle (SoftHSM2, SQLite, FakeClock): at most
 * `scheduler.concurrency` reconciles run at once, and every scope still has its first key when
 * start() resolves (the daemon serves only after it).
 */
import * as assert from 'node:assert/strict';
import { Scheduler } from '../../src/scheduler/scheduler';
import { signingKeyOf } from '../helpers/daemon';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

describe('scheduler start-up (integration, SoftHSM2 + FakeClock)', function () {
  this.timeout(120_000);
  let t: TestRuntime;
  let scheduler: Scheduler | null = null;
  const names = Array.from({ length: 9 }, (_, i) => `s${i}`);

  before(async () => {
    t = await startTestRuntime(
      names.map((name) => ({ name })),
      { configExtra: { scheduler: { concurrency: 2 } } },
    );
  });
  after(async () => {
    await scheduler?.stop();
    await t?.close();
  });

  it('reconciles every scope with at most scheduler.concurrency at once, each scope once', async () => {
    assert.equal(t.config.scheduler.concurrency, 2);
    let active = 0;
    let maxActive = 0;
    const order: string[] = [];
    // A counting wrapper around the real reconcile (the runtime's store, backend and clock).
    const reconcile = t.kw.reconcile.bind(t.kw);
    t.kw.reconcile = async (scope, actor) => {
      order.push(scope);
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        return await reconcile(scope, actor);
      } finally {
        active--;
      }
    };
    scheduler = new Scheduler(t.kw, {}, { jobs: [] });
    await scheduler.start();
    assert.equal(maxActive, 2);
    assert.deepEqual([...order].sort(), names);
    for (const scope of names) {
      const key = await signingKeyOf(t.ctx, scope);
      assert.equal(key.scope, scope);
    }
  });
});
