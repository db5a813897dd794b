/**
 * The key cache reloads when the store's key set changed since its last poll, and only then.
 * Attacked with writes whose timestamps cancel out: hosts whose clocks disagree (a CLI revoking
 * from a machine that runs behind) can stamp a row earlier than it was, so nothing derived from
 * `updated_at` (a maximum, a sum) is a safe change marker. On SQLite and on PostgreSQL, each
 * polled only (no LISTEN/NOTIFY: the cache is refreshed by hand, never started).
 */
import { strict as assert } from 'node:assert';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { FakeClock } from '../../src/policy/clock';
import type { KeyRecord } from '../../src/policy/key';
import { KeyEntity } from '../../src/store/entities/key.entity';
import { bothStores } from '../helpers/postgres';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

const { stores: STORES, stop: stopPostgres } = bothStores('marker');

describe('key cache change detection (polled)', function () {
  this.timeout(120_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(store.name, () => {
      let trt: TestRuntime;
      before(async () => {
        trt = await startTestRuntime(
          [{ name: 'alpha' }, { name: 'beta' }, { name: 'gamma' }, { name: 'delta' }],
          {
            clock: new FakeClock(Date.UTC(2026, 5, 1)),
            storeUrl: await store.url(),
          },
        );
        await reconcileAll(trt.ctx, 'test');
        await trt.ctx.cache.refresh(true);
      });
      after(async () => trt?.close());

      const keyOf = (scope: string) => {
        const record = trt.ctx.cache.view(scope)?.records[0];
        assert.ok(record, `no key in ${scope}`);
        return record;
      };
      /** What the cache holds now for `key` (looked up by its scope and kid). */
      const cached = (key: KeyRecord) => trt.ctx.cache.view(key.scope)?.byKid.get(key.kid!)?.record;
      const updatedAt = async (id: string) =>
        (await trt.rt.ds.getRepository(KeyEntity).findOneByOrFail({ id })).updatedAt.getTime();

      it('sees two revocations whose timestamps cancel out (one stamped by a clock 5 s behind)', async () => {
        const [a, b] = [keyOf('alpha'), keyOf('beta')];
        const [ua, ub] = [await updatedAt(a.id), await updatedAt(b.id)];
        // Same row count, same sum of updated_at: -5 s on one row, +5 s on the other.
        assert.ok(await trt.ctx.keys.revoke(a.id, new Date(ua - 5000), 'test: revoked from a slow host'));
        assert.ok(await trt.ctx.keys.revoke(b.id, new Date(ub + 5000), 'test: revoked'));
        assert.equal((await updatedAt(a.id)) + (await updatedAt(b.id)), ua + ub);

        await trt.ctx.cache.refresh();
        assert.notEqual(cached(a)?.revokedAt ?? null, null);
        assert.notEqual(cached(b)?.revokedAt ?? null, null);
      });

      it('never caches a revocation that rolls back, and sees the next write after it', async () => {
        const [g, d] = [keyOf('gamma'), keyOf('delta')];
        await trt.ctx.cache.refresh();
        let poll: Promise<void> | undefined;
        await assert.rejects(
          trt.ctx.store.transaction(async (tx) => {
            assert.ok(await tx.keys.revoke(g.id, trt.clock.now(), 'test: rolled back'));
            // A poll while the write is open: on SQLite it shares this process's one connection.
            poll = trt.ctx.cache.refresh();
            await Promise.race([poll, new Promise((r) => setTimeout(r, 200))]);
            throw new Error('roll back');
          }),
          /roll back/,
        );
        await poll;
        assert.equal(cached(g)?.revokedAt, null);
        // The next committed write is seen, whatever the version was while the write was open.
        assert.ok(await trt.ctx.keys.revoke(d.id, trt.clock.now(), 'test: revoked'));
        await trt.ctx.cache.refresh();
        assert.notEqual(cached(d)?.revokedAt ?? null, null);
        assert.equal(cached(g)?.revokedAt, null);
      });

      it('sees a write that leaves updated_at exactly as it was', async () => {
        const a = keyOf('alpha');
        const before = await updatedAt(a.id);
        await trt.rt.ds
          .getRepository(KeyEntity)
          .update({ id: a.id }, { revokedReason: 'test: edited in place', updatedAt: new Date(before) });
        await trt.ctx.cache.refresh();
        assert.equal(cached(a)?.revokedReason, 'test: edited in place');
      });

      it('does not reload for last_state, which only the audit bookkeeping reads', async () => {
        await trt.ctx.cache.refresh();
        const view = trt.ctx.cache.view('alpha');
        await trt.ctx.keys.setLastState(keyOf('alpha').id, 'retired');
        await trt.ctx.cache.refresh();
        assert.equal(trt.ctx.cache.view('alpha'), view);
      });

      it('does not reload when nothing changed', async () => {
        await trt.ctx.cache.refresh();
        const view = trt.ctx.cache.view('alpha');
        await trt.ctx.cache.refresh();
        // A reload builds new views; an unchanged store keeps the same objects.
        assert.equal(trt.ctx.cache.view('alpha'), view);
      });
    });
  }
});
