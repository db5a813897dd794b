/**
 * Reconcile and rotation as use cases (src/lifecycle/reconcile-scope.ts, generate-key.ts), on
 * in-memory fakes driven by a FakeClock: the real KeyCache and KeyIntegrity decide what is
 * published and what signs.
 */
import * as assert from 'node:assert/strict';
import { compactVerify, importJWK, type JWK } from 'jose';
import { judgeFacts, type SealedRow } from '../../../src/lifecycle/key-integrity';
import { thumbprint } from '../../../src/policy/thumbprint';
import type { KeyRecord } from '../../../src/policy/key';
import { effectiveState } from '../../../src/policy/key-state';
import { fakeRuntime, isCode, jwksKids, readyKeys, type FakeRuntime } from '../../helpers/fakes';

const MIN = 60_000;

describe('reconcile on fakes', () => {
  let rt: FakeRuntime;
  const t0 = () => new Date(Date.UTC(2026, 0, 1));
  const sign = (scope = 'consumer') => rt.kw.sign(scope, { claims: { sub: 'alice', aud: `${scope}-api` } });
  const at = (ms: number) => rt.clock.set(t0().getTime() + ms);

  beforeEach(async () => {
    rt = await fakeRuntime({ scopes: [{ name: 'consumer' }, { name: 'enterprise', alg: 'EdDSA' }] });
  });
  afterEach(async () => rt.close());

  it('on an empty scope creates one sealed key that signs at once, is published, and whose tokens verify', async () => {
    assert.deepEqual(jwksKids(rt, 'consumer'), []);
    await assert.rejects(sign(), isCode('NO_ACTIVE_KEY'));

    const report = await rt.kw.reconcile('consumer', 'test');
    assert.equal(report.ran, true);
    assert.deepEqual(report.errors, []);
    assert.equal(report.done.length, 1);
    assert.equal(report.done[0]?.action, 'create');
    assert.equal(report.done[0]?.detail, 'no-active-key');

    const [key, ...others] = await rt.store.keys.listAll();
    assert.ok(key);
    assert.deepEqual(others, []);
    assert.equal(key.status, 'ready');
    assert.equal(key.kid, report.done[0]?.kid);
    assert.equal(key.kid, await thumbprint(key.publicJwk!));
    assert.equal(key.activateAt.getTime(), t0().getTime(), 'the first key signs at once');
    assert.equal(key.retireAt.getTime() - key.activateAt.getTime(), 10 * MIN);
    assert.equal(key.expiresAt.getTime() - key.retireAt.getTime(), 5 * MIN);

    // Sealed in the backend, and the seal verifies over the row with the backend's public key.
    const [inv] = await rt.backend.inventory();
    assert.deepEqual([inv?.keyId, inv?.scope, inv?.sealed], [key.id, 'consumer', true]);
    const [answer] = await rt.backend.inspectKeys([{ ref: key.backendRef, alg: key.alg }]);
    assert.ok(answer?.status === 'found');
    assert.deepEqual(await judgeFacts(key as SealedRow, answer.facts), { ok: true });

    assert.deepEqual(rt.audit.types(), ['key.generating', 'key.created', 'key.activated']);
    const created = rt.audit.ofType('key.created')[0]!;
    assert.equal(created.kid, key.kid);
    assert.equal(created.actor, 'test');
    assert.equal((created.data as { keyId: string }).keyId, key.id);

    // The cache was refreshed by reconcile: published with the scope's issuer, and it signs.
    const jwks = JSON.parse(rt.kw.jwksDocument('consumer')) as { keys: (JWK & { iss: string })[] };
    assert.deepEqual(
      jwks.keys.map((k) => [k.kid, k.iss, k.alg]),
      [[key.kid, 'https://issuer.test/consumer', 'ES256']],
    );
    const { token, kid } = await sign();
    assert.equal(kid, key.kid);
    const verified = await compactVerify(token, await importJWK(jwks.keys[0]!, 'ES256'));
    assert.equal(verified.protectedHeader.kid, key.kid);
    assert.equal(JSON.parse(Buffer.from(verified.payload).toString()).iss, 'https://issuer.test/consumer');
    const r = await rt.kw.verify('consumer', token, 'consumer-api');
    assert.ok(r.valid, JSON.stringify(r));
    // Another scope is untouched and refuses this token.
    assert.deepEqual(jwksKids(rt, 'enterprise'), []);
    const cross = await rt.kw.verify('enterprise', token, 'consumer-api');
    assert.ok(!cross.valid);
  });

  it('is idempotent: a second pass at the same instant does nothing and records nothing', async () => {
    await rt.kw.reconcile('consumer');
    const events = rt.audit.events.length;
    const version = rt.store.version;
    const generated = rt.backend.calls.generate;
    const again = await rt.kw.reconcile('consumer');
    assert.deepEqual(again, { scope: 'consumer', ran: true, done: [], errors: [] });
    assert.equal(rt.audit.events.length, events);
    assert.equal(rt.store.version, version);
    assert.equal(rt.backend.calls.generate, generated);
  });

  it('init creates a first key in every scope, with the scope’s alg', async () => {
    const report = await rt.kw.init('operator');
    assert.deepEqual(report.errors, []);
    for (const s of report.scopes) {
      const [k] = await readyKeys(rt, s.scope);
      assert.equal(s.signingKid, k?.kid, s.scope);
      assert.equal(s.actions[0]?.action, 'create');
    }
    const [ed] = await readyKeys(rt, 'enterprise');
    assert.equal(ed?.alg, 'EdDSA');
    assert.equal(ed?.publicJwk?.crv, 'Ed25519');
    const { token } = await sign('enterprise');
    assert.ok((await rt.kw.verify('enterprise', token, 'enterprise-api')).valid);
  });

  it('moves through the timeline: successor prepublished, old key stops signing at retire, leaves the JWKS at expiry, is destroyed after destroyAfter', async () => {
    await rt.kw.reconcile('consumer');
    const [a] = await readyKeys(rt, 'consumer');
    assert.ok(a);
    assert.equal((await rt.kw.nextDecisionAt('consumer'))?.getTime(), a.retireAt.getTime() - 2 * MIN);

    // One second before the successor is due: nothing to do.
    at(8 * MIN - 1000);
    assert.deepEqual((await rt.kw.reconcile('consumer')).done, []);
    assert.deepEqual(jwksKids(rt, 'consumer'), [a.kid]);

    // retireAt - prepublish: the successor is created, published, activating exactly at retireAt.
    at(8 * MIN);
    const due = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      due.done.map((d) => [d.action, d.detail]),
      [['create', 'rotation-due']],
    );
    const b = (await readyKeys(rt, 'consumer')).find((k) => k.id !== a.id) as KeyRecord;
    assert.equal(b.activateAt.getTime(), a.retireAt.getTime(), 'no gap, no overlap');
    assert.equal(effectiveState(b, rt.clock.now()), 'pending');
    assert.deepEqual(jwksKids(rt, 'consumer').sort(), [a.kid, b.kid].sort());
    assert.equal((await sign()).kid, a.kid, 'a pending key does not sign');
    assert.ok(rt.audit.ofType('key.published').some((e) => e.kid === b.kid));

    at(9 * MIN);
    const late = await sign();
    assert.equal(late.kid, a.kid);

    // At A's retireAt B signs; A is still published and still verifies what it signed.
    at(10 * MIN);
    assert.equal((await sign()).kid, b.kid);
    assert.deepEqual(jwksKids(rt, 'consumer').sort(), [a.kid, b.kid].sort());
    assert.ok((await rt.kw.verify('consumer', late.token, 'consumer-api')).valid);
    await rt.kw.reconcile('consumer');
    assert.ok(rt.audit.ofType('key.retired').some((e) => e.kid === a.kid));
    assert.ok(rt.audit.ofType('key.activated').some((e) => e.kid === b.kid));

    // At A's expiresAt it leaves the JWKS; its backend object stays until destroyAfter.
    at(15 * MIN);
    assert.deepEqual(jwksKids(rt, 'consumer'), [b.kid]);
    await rt.kw.reconcile('consumer');
    assert.ok(rt.audit.ofType('key.expired').some((e) => e.kid === a.kid));
    assert.equal(await rt.backend.exists(a.backendRef), true);
    assert.equal((await rt.store.keys.findById(a.id))?.destroyedAt, null);

    at(18 * MIN);
    assert.deepEqual(
      (await rt.kw.reconcile('consumer')).done.map((d) => d.action),
      ['create'],
    );

    at(25 * MIN - 1000);
    assert.ok(!(await rt.kw.reconcile('consumer')).done.some((d) => d.action === 'destroy'));
    assert.equal(await rt.backend.exists(a.backendRef), true);

    // expiresAt + destroyAfter: the backend object is destroyed; the row stays, marked.
    at(25 * MIN);
    const destroy = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      destroy.done.filter((d) => d.action === 'destroy').map((d) => d.kid),
      [a.kid],
    );
    assert.equal(await rt.backend.exists(a.backendRef), false);
    const row = await rt.store.keys.findById(a.id);
    assert.equal(row?.destroyedAt?.getTime(), rt.clock.now().getTime());
    assert.ok(rt.audit.ofType('key.destroyed').some((e) => e.kid === a.kid));
    // Destroyed and expired, the row is still trusted as dead, never as live.
    const verify = await rt.kw.verifyKeys();
    assert.equal(verify.trust.get(a.id), 'dead');
    assert.equal(verify.ok, true, JSON.stringify(verify.refused));
    assert.equal(rt.lock.isHeld('consumer'), false);
  });

  it('operator rotation prepublishes: the new key is in the JWKS a full prepublish before it signs', async () => {
    await rt.kw.reconcile('consumer');
    const [old] = await readyKeys(rt, 'consumer');
    const next = await rt.kw.rotate('consumer', 'operator');
    assert.equal(next.activateAt.getTime(), rt.clock.now().getTime() + 2 * MIN);
    assert.deepEqual(jwksKids(rt, 'consumer').sort(), [old!.kid, next.kid].sort());
    assert.equal((await sign()).kid, old!.kid);
    rt.clock.set(next.activateAt);
    assert.equal((await sign()).kid, next.kid);
    const created = rt.audit.ofType('key.created').find((e) => e.kid === next.kid);
    assert.equal((created?.data as { reason: string }).reason, 'operator rotation');
    assert.equal(created?.actor, 'operator');
  });

  describe('backend and store failures', () => {
    it('backend down: the error is reported, the leftover row is removed and a key made once it is back', async () => {
      rt.backend.down = true;
      const failed = await rt.kw.reconcile('consumer');
      assert.deepEqual(
        failed.errors.map((e) => [e.action, e.code]),
        [['create', 'BACKEND_UNAVAILABLE']],
      );
      assert.deepEqual(failed.done, []);
      // The object could not be cleaned up either, so the `generating` row stays for reconcile.
      assert.deepEqual(
        (await rt.store.keys.listAll()).map((k) => k.status),
        ['generating'],
      );
      assert.deepEqual(rt.audit.types(), ['key.generating']);
      await assert.rejects(sign(), isCode('NO_ACTIVE_KEY'));
      const ready = await rt.kw.readiness();
      assert.equal(ready.ok, false);
      assert.equal(ready.checks['backend:hsm']?.ok, false);

      rt.backend.down = false;
      const recovered = await rt.kw.reconcile('consumer');
      assert.deepEqual(recovered.errors, []);
      assert.deepEqual(
        recovered.done.map((d) => [d.action, d.detail]),
        [
          ['resolve-generating', 'removed'],
          ['create', 'no-active-key'],
        ],
      );
      assert.ok(rt.audit.types().includes('key.generation-failed'));
      const all = await rt.store.keys.listAll();
      assert.deepEqual(
        all.map((k) => k.status),
        ['ready'],
      );
      assert.equal(rt.backend.size, 1);
      assert.equal((await sign()).kid, all[0]?.kid);
      // Ready again as far as this scope goes (enterprise was never reconciled here: no key yet).
      const back = await rt.kw.readiness();
      assert.equal(back.checks['backend:hsm']?.ok, true);
      assert.equal(back.checks['scope:consumer'], undefined);
      assert.match(back.checks['scope:enterprise']?.detail ?? '', /no active signing key/);
    });

    it('a failed seal abandons the key: its object destroyed, its row removed, nothing published', async () => {
      rt.backend.failNext('attachSeal');
      const report = await rt.kw.reconcile('consumer');
      assert.deepEqual(
        report.errors.map((e) => [e.action, e.code]),
        [['create', 'BACKEND_UNAVAILABLE']],
      );
      assert.equal(rt.backend.size, 0, 'the half-made key stayed in the backend');
      assert.deepEqual(await rt.store.keys.listAll(), []);
      assert.deepEqual(rt.audit.types(), ['key.generating', 'key.generation-failed']);
      assert.deepEqual(jwksKids(rt, 'consumer'), []);
      // The next pass makes it.
      assert.deepEqual(
        (await rt.kw.reconcile('consumer')).done.map((d) => d.action),
        ['create'],
      );
      assert.equal(rt.backend.size, 1);
    });

    it('an audit append that fails rolls the row completion back; the next pass completes the sealed key, not a second one', async () => {
      rt.audit.failWhen = (e) => e.type === 'key.created';
      const report = await rt.kw.reconcile('consumer');
      assert.deepEqual(
        report.errors.map((e) => e.action),
        ['create'],
      );
      const [leftover] = await rt.store.keys.listAll();
      assert.equal(leftover?.status, 'generating', 'the completion committed without its audit record');
      assert.equal(leftover?.kid, null);
      assert.equal(rt.audit.ofType('key.created').length, 0);
      assert.deepEqual(jwksKids(rt, 'consumer'), []);
      assert.equal(rt.backend.size, 1, 'the sealed key stays for recovery');

      rt.audit.failWhen = null;
      const recovered = await rt.kw.reconcile('consumer');
      assert.deepEqual(
        recovered.done.map((d) => [d.action, d.detail]),
        [['resolve-generating', 'completed']],
      );
      const [key] = await rt.store.keys.listAll();
      assert.equal(key?.id, leftover?.id);
      assert.equal(key?.status, 'ready');
      assert.equal(rt.backend.size, 1, 'a second key was made');
      assert.equal(
        (rt.audit.ofType('key.created')[0]?.data as { reason: string }).reason,
        'recovered after interruption',
      );
      assert.equal((await sign()).kid, key?.kid);
    });

    it('a confirmed key stays trusted while its backend cannot be asked; signing fails meanwhile', async () => {
      await rt.kw.reconcile('consumer');
      const [key] = await readyKeys(rt, 'consumer');
      rt.backend.down = true;
      const verify = await rt.kw.verifyKeys();
      assert.equal(verify.trust.get(key!.id), 'trusted');
      assert.deepEqual(verify.refused, []);
      assert.deepEqual(jwksKids(rt, 'consumer'), [key!.kid]);
      await assert.rejects(sign(), isCode('BACKEND_UNAVAILABLE'));
      rt.backend.down = false;
      assert.equal((await sign()).kid, key!.kid);
    });
  });
});
