/**
 * The key cache reads only what changed (issue #20: one revocation among 100,000 scopes): a
 * reload after a write reads the rows the store's change log names, checks only those (a dead row
 * with no backend call, a live one by inspecting its own reference, never the backend's
 * inventory) and rebuilds only their scopes' views, telling reload listeners which. Store writes
 * made behind keywarden's back through this path are refused as through a full reload. When the
 * log cannot vouch for the stretch (a nonce that does not match, a gap), and at least every
 * FULL_RELOAD_INTERVAL_SECONDS, the reload is a full one. SQLite and PostgreSQL (with its LISTEN
 * path), a real SoftHSM2 token, a fake clock.
 */
import * as assert from 'node:assert/strict';
import pino from 'pino';
import type { KeyBackend } from '../../src/backends/key-backend';
import { FULL_RELOAD_INTERVAL_SECONDS, type ChangedScopes } from '../../src/lifecycle/key-cache';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { rotateScope } from '../../src/lifecycle/rotate-scope';
import { signToken } from '../../src/lifecycle/sign-token';
import { verifyToken } from '../../src/lifecycle/verify-token';
import { openRuntime, storeAuditLog, type Runtime } from '../../src/main';
import { FakeClock } from '../../src/policy/clock';
import type { KeyRecord } from '../../src/policy/key';
import { pickSigningKey } from '../../src/policy/next-actions';
import type { KeyChangeListener } from '../../src/store/key-change-notifier';
import { bothStores } from '../helpers/postgres';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';
import { attackerKeyRow, storeWriter, type StoreWriter } from '../helpers/store-tamper';
import { setTimeout as sleep } from 'node:timers/promises';

const { stores: STORES, stop: stopPostgres } = bothStores('incremental');
// Keys that stay active across the test's clock moves (the full-pass interval included).
const SCOPES = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'kappa', 'lambda'].map(
  (name) => ({ name, policy: { activeFor: '1d', maxKeyLifetime: '2d' } }),
);

describe('key cache: a reload reads, checks and rebuilds only what changed', function () {
  this.timeout(180_000);
  after(() => stopPostgres());

  for (const store of STORES) {
    describe(store.name, () => {
      let t: TestRuntime;
      let sql: StoreWriter;
      let backend: KeyBackend;
      const calls = { inventory: 0, inspected: 0 };
      const reloads: ChangedScopes[] = [];

      before(async () => {
        t = await startTestRuntime(SCOPES, {
          clock: new FakeClock(Date.UTC(2026, 5, 1)),
          storeUrl: await store.url(),
        });
        await reconcileAll(t.ctx, 'test');
        await t.ctx.cache.refresh(true);
        sql = storeWriter(t.rt.ds);
        // Count what the cache asks of the backend (the instance the runtime holds).
        backend = await t.ctx.backend('hsm');
        const inventory = backend.inventory.bind(backend);
        const inspectKeys = backend.inspectKeys.bind(backend);
        backend.inventory = () => {
          calls.inventory++;
          return inventory();
        };
        backend.inspectKeys = (keys) => {
          calls.inspected += keys.length;
          return inspectKeys(keys);
        };
        t.ctx.cache.onReload((changed) => reloads.push(changed));
      });
      after(async () => t?.close());
      beforeEach(() => {
        // A full pass from here on would carry a new time.
        t.clock.advanceSeconds(1);
        calls.inventory = 0;
        calls.inspected = 0;
        reloads.length = 0;
      });

      const fullAt = () => t.ctx.cache.integrity.lastFullCheckAt?.getTime();
      const activeKey = async (scope: string): Promise<KeyRecord> => {
        const keys = (await t.ctx.keys.listByScope(scope)).filter((k) => k.status === 'ready');
        const key = pickSigningKey(keys, t.clock.now());
        assert.ok(key, `no active key in ${scope}`);
        return key;
      };
      const published = (scope: string) => t.ctx.cache.jwks(t.ctx.cache.view(scope)!).kids;
      const refusal = (id: string) => t.ctx.cache.integrity.report!.refused.find((r) => r.keyId === id);

      it('one revocation: its scope view alone is rebuilt, listeners hear of that scope, no backend call', async () => {
        const key = await activeKey('alpha');
        const before = { alpha: t.ctx.cache.view('alpha'), beta: t.ctx.cache.view('beta'), full: fullAt() };
        assert.ok(published('alpha').includes(key.kid!));
        assert.ok(await t.ctx.keys.revoke(key.id, t.clock.now(), 'test: revoked'));
        await t.ctx.cache.refresh();
        assert.ok(!published('alpha').includes(key.kid!), 'the revoked key is still published');
        assert.notEqual(t.ctx.cache.view('alpha')!.byKid.get(key.kid!)!.record.revokedAt, null);
        assert.notEqual(t.ctx.cache.view('alpha'), before.alpha);
        assert.equal(t.ctx.cache.view('beta'), before.beta, 'an unchanged scope was rebuilt');
        assert.deepEqual(
          reloads.map((c) => (c === null ? null : [...c])),
          [['alpha']],
        );
        assert.deepEqual(calls, { inventory: 0, inspected: 0 });
        assert.equal(fullAt(), before.full, 'a full pass ran');
        // The revoked key's row is still trusted as dead in the standing report.
        assert.ok(t.ctx.cache.integrity.report!.usable.some((k) => k.id === key.id));
      });

      it('a new key is inspected at its own reference, never through the inventory', async () => {
        const before = fullAt();
        const made = await rotateScope(t.ctx, 'beta', 'test');
        assert.ok(t.ctx.cache.view('beta')!.byKid.has(made.kid!), 'the new key is not in the view');
        assert.equal(refusal(made.id), undefined);
        assert.ok(calls.inspected >= 1);
        assert.equal(calls.inventory, 0);
        assert.equal(fullAt(), before);
      });

      it('a row tampered after the process loaded it is refused at the next incremental reload', async () => {
        const key = await activeKey('gamma');
        const before = fullAt();
        // Storm-0558 through the store: gamma's key moved to delta.
        await sql.update(key.id, { scope: 'delta' });
        await t.ctx.cache.refresh();
        assert.equal(fullAt(), before, 'a full pass ran');
        assert.equal(calls.inventory, 0);
        assert.equal(refusal(key.id)?.reason, 'label-mismatch');
        assert.ok(!t.ctx.cache.view('delta')!.byKid.has(key.kid!), 'delta holds the re-scoped key');
        assert.ok(!t.ctx.cache.view('gamma')!.byKid.has(key.kid!), 'gamma still holds the tampered row');
        assert.ok(!published('delta').includes(key.kid!));
        const signed = await signToken(t.ctx, 'delta', { claims: { aud: 'delta-api', sub: 'x' } });
        assert.notEqual(signed.kid, key.kid);
        // The row left gamma's view and entered none.
        assert.deepEqual(
          reloads.map((c) => (c === null ? null : [...c])),
          [['gamma']],
        );

        // Times moved later on another live key: its seal no longer verifies over the row.
        const other = await activeKey('theta');
        await sql.update(other.id, { expires_at: other.expiresAt.getTime() + 3600_000 });
        await t.ctx.cache.refresh();
        assert.equal(fullAt(), before);
        assert.ok(refusal(other.id), 'the re-timed row was not refused');
        assert.ok(!published('theta').includes(other.kid!));
      });

      it('a row inserted behind keywarden is refused at the next incremental reload', async () => {
        const template = await activeKey('epsilon');
        const before = fullAt();
        const attacker = await attackerKeyRow(template, 'epsilon');
        await sql.insert(attacker.row);
        await t.ctx.cache.refresh();
        assert.equal(fullAt(), before, 'a full pass ran');
        assert.equal(calls.inventory, 0);
        assert.equal(refusal(attacker.row.id!)?.reason, 'object-missing');
        assert.ok(!published('epsilon').includes(attacker.kid));
        assert.ok(!t.ctx.cache.view('epsilon')!.byKid.has(attacker.kid));
        assert.ok(published('epsilon').includes(template.kid!), 'the real key left the JWKS');
      });

      it('a deleted row whose object remains is reported missing at the next incremental reload', async () => {
        const key = await activeKey('zeta');
        const before = fullAt();
        await sql.remove(key.id);
        await t.ctx.cache.refresh();
        assert.equal(fullAt(), before, 'a full pass ran');
        assert.ok(!t.ctx.cache.view('zeta')!.byKid.has(key.kid!));
        assert.deepEqual(
          t.ctx.cache.integrity.report!.missingRows.filter((m) => m.keyId === key.id).map((m) => m.scope),
          ['zeta'],
        );
      });

      it('falls back to a full reload when the change log cannot vouch: a nonce that does not match, a gap', async () => {
        const first = await activeKey('eta');
        const held = async () =>
          Number(
            ((await t.rt.ds.query('SELECT version FROM key_set_version')) as { version: string }[])[0]!
              .version,
          );
        const p = store.name === 'SQLite' ? '?' : '$1';

        // The entry of the version this process holds carries another nonce (a restored backup).
        await t.ctx.cache.refresh();
        let before = fullAt();
        await t.rt.ds.query(`UPDATE key_changes SET nonce = 'restored' WHERE version = ${p}`, [await held()]);
        assert.ok(await t.ctx.keys.revoke(first.id, t.clock.now(), 'test: revoked'));
        await t.ctx.cache.refresh();
        assert.notEqual(fullAt(), before, 'no full pass after a nonce mismatch');
        assert.ok(calls.inventory > 0);
        assert.ok(!published('eta').includes(first.kid!));
        assert.deepEqual(reloads, [null]);

        // An entry missing between the held version and the current one.
        t.clock.advanceSeconds(1);
        before = fullAt();
        const start = await held();
        await t.ctx.keys.setLastState(first.id, 'revoked'); // not a versioned column: no entry
        await sql.update(first.id, { revoked_reason: 'test: one' });
        await sql.update(first.id, { revoked_reason: 'test: two' });
        await t.rt.ds.query(`DELETE FROM key_changes WHERE version = ${p}`, [start + 1]);
        await t.ctx.cache.refresh();
        assert.notEqual(fullAt(), before, 'no full pass after a gap');
        assert.equal(t.ctx.cache.view('eta')!.byKid.get(first.kid!)!.record.revokedReason, 'test: two');
      });

      it("imports a key's public key when a verification first needs it, and keeps it across reloads", async () => {
        // Earlier tests revoked and tampered keys: every scope gets a signing key again first.
        await reconcileAll(t.ctx, 'test');
        await t.ctx.cache.refresh(true);
        const signed = await signToken(t.ctx, 'eta', { claims: { aud: 'eta-api', sub: 'x' } });
        const imported = () =>
          (t.ctx.cache.view('eta')!.byKid.get(signed.kid) as unknown as { importedKey: unknown }).importedKey;
        assert.equal(imported(), null, 'a reload imported a public key nobody verified with');
        const verdict = await verifyToken(t.ctx, 'eta', signed.token, 'eta-api');
        assert.equal(verdict.valid, true);
        const key = imported();
        assert.ok(key !== null, 'the verification imported no key');
        // Another scope's revocation (an incremental reload), then a full one: the same KeyObject.
        const other = await activeKey('kappa');
        assert.ok(await t.ctx.keys.revoke(other.id, t.clock.now(), 'test: revoked'));
        await t.ctx.cache.refresh();
        assert.equal(imported(), key);
        await t.ctx.cache.refresh(true);
        assert.equal(imported(), key);
        // kappa gets its replacement back for the tests after this one.
        await reconcileAll(t.ctx, 'test');
      });

      it(`runs a full pass at least every ${FULL_RELOAD_INTERVAL_SECONDS} s, even with nothing changed`, async () => {
        await t.ctx.cache.refresh();
        const before = fullAt();
        reloads.length = 0;
        calls.inventory = 0;
        t.clock.advanceSeconds(FULL_RELOAD_INTERVAL_SECONDS - 5);
        await t.ctx.cache.refresh();
        assert.equal(fullAt(), before);
        assert.equal(calls.inventory, 0);
        t.clock.advanceSeconds(5);
        await t.ctx.cache.refresh();
        assert.equal(fullAt(), t.clock.now().getTime());
        assert.ok(calls.inventory > 0);
        assert.deepEqual(reloads, [null]);
      });

      if (store.name === 'PostgreSQL') {
        it('LISTEN path: another process’s revocation arrives incrementally, and a tampered row with it is refused', async () => {
          const other: Runtime = await openRuntime(t.config, {
            log: pino({ level: 'silent' }),
            clock: t.clock,
            audit: storeAuditLog(),
          });
          t.ctx.cache.start();
          try {
            const feed = t.ctx.cache.activeFeed as KeyChangeListener;
            const deadline = Date.now() + 10_000;
            while (!feed.listening) {
              assert.ok(Date.now() < deadline, 'the listener did not connect');
              await sleep(20);
            }
            await t.ctx.cache.refresh();
            const before = fullAt();
            calls.inventory = 0;
            const victim = await activeKey('kappa');
            const tampered = await activeKey('lambda');
            // A store writer re-times lambda's key (no NOTIFY: plain SQL), then another daemon
            // revokes kappa's key (NOTIFY at commit): the reload it wakes reads both rows.
            await sql.update(tampered.id, { retire_at: tampered.retireAt.getTime() + 60_000 });
            const notifications = feed.notifications;
            assert.ok(await other.ctx.keys.revoke(victim.id, t.clock.now(), 'test: from another daemon'));
            while (published('kappa').includes(victim.kid!) || published('lambda').includes(tampered.kid!)) {
              assert.ok(Date.now() < deadline, 'the revocation did not arrive');
              await sleep(10);
            }
            assert.ok(feed.notifications > notifications);
            assert.ok(refusal(tampered.id), 'the tampered row was not refused');
            assert.equal(fullAt(), before, 'a full pass ran');
            assert.equal(calls.inventory, 0);
          } finally {
            t.ctx.cache.stop();
            await other.close();
          }
        });
      }
    });
  }
});
