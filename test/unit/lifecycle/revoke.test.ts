/**
 * Emergency revocation as a use case (src/lifecycle/revoke-key.ts) on in-memory fakes: the key
 * leaves the JWKS and stops signing and verifying, its backend objects are destroyed at once (or
 * by the next reconcile when the backend cannot be reached), and a replacement signs at once
 * when it was the scope's only active key.
 */
import * as assert from 'node:assert/strict';
import type { KeyRecord } from '../../../src/policy/key';
import { effectiveState } from '../../../src/policy/key-state';
import { fakeRuntime, isCode, jwksKids, readyKeys, type FakeRuntime } from '../../helpers/fakes';

describe('revoke on fakes', () => {
  let rt: FakeRuntime;
  let key: KeyRecord;
  const sign = () => rt.kw.sign('consumer', { claims: { sub: 'alice', aud: 'consumer-api' } });

  beforeEach(async () => {
    rt = await fakeRuntime({ scopes: [{ name: 'consumer' }, { name: 'enterprise' }] });
    await rt.kw.init('test');
    [key] = (await readyKeys(rt, 'consumer')) as [KeyRecord];
  });
  afterEach(async () => rt.close());

  it('the only active key: leaves the JWKS, its tokens fail, its objects are destroyed, a replacement signs at once', async () => {
    const { token } = await sign();
    rt.clock.advanceSeconds(30);
    const now = rt.clock.now();
    const r = await rt.kw.revoke(key.kid!, '  leaked in a crash dump ', 'operator');

    assert.equal(r.destroyed, true);
    assert.equal(r.revoked.id, key.id);
    assert.equal(r.revoked.revokedAt?.getTime(), now.getTime());
    assert.equal(r.revoked.revokedReason, 'leaked in a crash dump');
    assert.ok(r.replacement, 'no replacement');
    assert.equal(r.replacement.activateAt.getTime(), now.getTime(), 'the replacement must sign at once');
    assert.equal(effectiveState(r.replacement, now), 'active');

    assert.deepEqual(jwksKids(rt, 'consumer'), [r.replacement.kid]);
    assert.equal((await sign()).kid, r.replacement.kid);
    const v = await rt.kw.verify('consumer', token, 'consumer-api');
    assert.ok(!v.valid && v.reason === 'key_revoked', JSON.stringify(v));

    assert.equal(await rt.backend.exists(key.backendRef), false, 'revocation destroys the key at once');
    const row = await rt.store.keys.findById(key.id);
    assert.equal(row?.revokedAt?.getTime(), now.getTime());
    assert.equal(row?.destroyedAt?.getTime(), now.getTime());

    const mine = rt.audit.events.filter((e) => e.kid === key.kid).map((e) => [e.type, e.actor, e.data]);
    assert.deepEqual(mine.slice(-2), [
      ['key.revoked', 'operator', { reason: 'leaked in a crash dump' }],
      ['key.destroyed', 'operator', { reason: 'revoked' }],
    ]);
    const created = rt.audit.ofType('key.created').find((e) => e.kid === r.replacement!.kid);
    assert.equal((created?.data as { reason: string }).reason, 'replacement after revocation');
    // The other scope is untouched.
    assert.equal((await readyKeys(rt, 'enterprise')).length, 1);
  });

  it('is recorded once, by the operator: the next reconciles do not log the revocation again', async () => {
    await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    await rt.kw.reconcile('consumer');
    rt.clock.advanceSeconds(3600);
    await rt.kw.reconcile('consumer');
    const revoked = rt.audit.ofType('key.revoked').filter((e) => e.kid === key.kid);
    assert.deepEqual(
      revoked.map((e) => [e.actor, e.data]),
      [['operator', { reason: 'leaked' }]],
    );
  });

  it('finds the key by a unique kid prefix', async () => {
    const r = await rt.kw.revoke(key.kid!.slice(0, 10), 'leaked', 'operator');
    assert.equal(r.revoked.kid, key.kid);
  });

  it('refuses bad requests and changes nothing: twice, no reason, unknown kid, an expired key', async () => {
    await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    const rows = await rt.store.keys.listAll();
    const events = rt.audit.events.length;
    const version = rt.store.version;
    await assert.rejects(rt.kw.revoke(key.kid!, 'again', 'operator'), isCode('KEY_NOT_USABLE'));
    const [current] = (await readyKeys(rt, 'consumer')).filter((k) => k.revokedAt === null);
    await assert.rejects(rt.kw.revoke(current!.kid!, '   ', 'operator'), isCode('REQUEST_INVALID'));
    await assert.rejects(
      rt.kw.revoke(current!.kid!, undefined as unknown as string, 'operator'),
      isCode('REQUEST_INVALID'),
    );
    await assert.rejects(rt.kw.revoke('no-such-kid-at-all', 'x', 'operator'), isCode('KEY_NOT_FOUND'));
    const [enterprise] = await readyKeys(rt, 'enterprise');
    rt.clock.set(enterprise!.expiresAt);
    await assert.rejects(rt.kw.revoke(enterprise!.kid!, 'late', 'operator'), isCode('KEY_NOT_USABLE'));
    assert.deepEqual(await rt.store.keys.listAll(), rows);
    assert.equal(rt.audit.events.length, events);
    assert.equal(rt.store.version, version);
  });

  it('with another active key: no replacement, the other key keeps signing', async () => {
    const next = await rt.kw.rotate('consumer', 'operator');
    rt.clock.set(next.activateAt); // both active: next signs (latest activateAt), key still could
    assert.equal(effectiveState(key, rt.clock.now()), 'active');
    const r = await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    assert.equal(r.replacement, null);
    assert.equal((await sign()).kid, next.kid);
    assert.deepEqual(jwksKids(rt, 'consumer'), [next.kid]);
  });

  it('backend objects that cannot be destroyed now: destroyed=false, the key is dead anyway, reconcile destroys them', async () => {
    rt.backend.failNext('destroy');
    const r = await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    assert.equal(r.destroyed, false);
    assert.equal(r.revoked.destroyedAt, null);
    assert.ok(r.replacement, 'the replacement is still made');
    assert.equal(await rt.backend.exists(key.backendRef), true);
    assert.equal((await rt.store.keys.findById(key.id))?.destroyedAt, null);
    assert.ok(!jwksKids(rt, 'consumer').includes(key.kid!));
    assert.equal((await sign()).kid, r.replacement.kid);

    const report = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      report.done.filter((d) => d.action === 'destroy').map((d) => d.kid),
      [key.kid],
    );
    assert.equal(await rt.backend.exists(key.backendRef), false);
    assert.ok((await rt.store.keys.findById(key.id))?.destroyedAt);
  });

  it('backend down with another active key: revoked in the store, destroyed by the first reconcile after it is back', async () => {
    const next = await rt.kw.rotate('consumer', 'operator');
    rt.clock.set(next.activateAt);
    rt.backend.down = true;
    const r = await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    assert.deepEqual([r.destroyed, r.replacement], [false, null]);
    assert.ok((await rt.store.keys.findById(key.id))?.revokedAt);
    assert.deepEqual(jwksKids(rt, 'consumer'), [next.kid]);
    // Still down: reconcile reports the failed destroy and keeps the row unmarked.
    const down = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      down.errors.map((e) => [e.action, e.code]),
      [['destroy', 'BACKEND_UNAVAILABLE']],
    );
    assert.equal((await rt.store.keys.findById(key.id))?.destroyedAt, null);
    rt.backend.down = false;
    const up = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      up.done.filter((d) => d.action === 'destroy').map((d) => d.kid),
      [key.kid],
    );
    assert.equal(await rt.backend.exists(key.backendRef), false);
  });

  it('backend down and no other key: the revocation commits and the replacement fails; reconcile recovers', async () => {
    rt.backend.down = true;
    await assert.rejects(rt.kw.revoke(key.kid!, 'leaked', 'operator'), isCode('BACKEND_UNAVAILABLE'));
    assert.ok((await rt.store.keys.findById(key.id))?.revokedAt, 'the revocation itself must stand');
    assert.ok(rt.audit.ofType('key.revoked').some((e) => e.kid === key.kid));
    // This process stops using the key at once, although the replacement failed (other
    // processes at their next reload): with the backend back, it must not sign with it.
    assert.deepEqual(jwksKids(rt, 'consumer'), []);
    rt.backend.down = false;
    await assert.rejects(sign(), isCode('NO_ACTIVE_KEY'));
    rt.backend.down = true;

    rt.backend.down = false;
    const report = await rt.kw.reconcile('consumer');
    assert.deepEqual(report.done.map((d) => d.action).sort(), ['create', 'destroy', 'resolve-generating']);
    assert.equal(await rt.backend.exists(key.backendRef), false);
    const signed = await sign();
    assert.notEqual(signed.kid, key.kid);
  });

  it('is atomic: when the audit record cannot be appended, nothing is revoked and nothing destroyed', async () => {
    rt.audit.failWhen = (e) => e.type === 'key.revoked';
    const destroys = rt.backend.calls.destroy;
    await assert.rejects(rt.kw.revoke(key.kid!, 'leaked', 'operator'), /audit append failed/);
    const row = await rt.store.keys.findById(key.id);
    assert.equal(row?.revokedAt, null);
    assert.equal(row?.revokedReason, null);
    assert.equal(rt.backend.calls.destroy, destroys);
    assert.equal(await rt.backend.exists(key.backendRef), true);
    await rt.ctx.cache.refresh(true);
    assert.deepEqual(jwksKids(rt, 'consumer'), [key.kid]);
    assert.equal((await sign()).kid, key.kid);
    assert.equal(rt.lock.isHeld('consumer'), false, 'the lock must be released after the failure');
  });
});
