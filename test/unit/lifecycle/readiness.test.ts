/**
 * Readiness means "this process can do its job now" (src/lifecycle/readiness.ts): a store that
 * reads but cannot commit, a scope that cannot sign, a scope whose key generation keeps failing,
 * each makes it not ready, naming the scope (or the store) and the reason. On fakes with a
 * FakeClock; test/e2e/hsm-recovery.test.ts and test/integration/store-full.test.ts show the same
 * against SoftHSM2 and a full file system.
 */
import * as assert from 'node:assert/strict';
import { KeywardenError } from '../../../src/policy/errors';
import { fakeRuntime, type FakeRuntime } from '../../helpers/fakes';

describe('readiness: can this process do its job now', () => {
  let rt: FakeRuntime;
  const sign = () => rt.kw.sign('consumer', { claims: { sub: 'alice', aud: 'consumer-api' } });

  beforeEach(async () => {
    rt = await fakeRuntime({ scopes: [{ name: 'consumer' }, { name: 'enterprise' }] });
  });
  afterEach(async () => rt.close());

  it('is ready once every scope has a signing key, and says so', async () => {
    await rt.kw.reconcileAll('test');
    const r = await rt.kw.readiness();
    assert.equal(r.ok, true, JSON.stringify(r.checks));
    assert.equal(r.checks.scopes?.detail, 'all 2 scope(s) can sign');
    assert.deepEqual(
      r.scopes.map((s) => [s.scope, s.ok]),
      [
        ['consumer', true],
        ['enterprise', true],
      ],
    );
  });

  it('a scope without an active key is not ready, by name', async () => {
    await rt.kw.reconcile('enterprise', 'test');
    const r = await rt.kw.readiness();
    assert.equal(r.ok, false);
    assert.match(
      r.checks['scope:consumer']?.detail ?? '',
      /scope consumer cannot sign: no active signing key/,
    );
    assert.equal(r.checks['scope:enterprise'], undefined);
  });

  it('not ready while the store answers reads but cannot commit a write (disk full)', async () => {
    await rt.kw.reconcileAll('test');
    rt.store.unwritable = 'SQLITE_FULL: database or disk is full (injected)';
    const r = await rt.kw.readiness();
    assert.equal(r.ok, false);
    assert.equal(r.checks.store?.ok, true, 'reads still work');
    assert.equal(r.checks['store-write']?.ok, false);
    assert.match(r.checks['store-write']?.detail ?? '', /cannot be written: SQLITE_FULL/);
    rt.store.unwritable = null;
    assert.equal((await rt.kw.readiness()).ok, true);
  });

  it('not ready while key generation keeps failing (twice in a row), though the current key still signs', async () => {
    await rt.kw.reconcileAll('test');
    const due = await rt.kw.nextDecisionAt('consumer');
    assert.ok(due);
    rt.clock.set(due);
    const refused = new KeywardenError('BACKEND_UNAVAILABLE', 'token full (injected)');
    rt.backend.failNext('generate', refused);
    rt.backend.failNext('generate', refused);

    const first = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      first.errors.map((e) => e.code),
      ['BACKEND_UNAVAILABLE'],
    );
    assert.equal((await rt.kw.readiness()).ok, true, 'one failure may be a hiccup');

    await rt.kw.reconcile('consumer');
    const r = await rt.kw.readiness();
    assert.equal(r.ok, false);
    assert.match(
      r.checks['scope:consumer']?.detail ?? '',
      /key generation failed 2 times in a row since .* \(BACKEND_UNAVAILABLE\): .*token full/,
    );
    assert.equal(r.checks['scope:enterprise'], undefined);
    await sign(); // the key in use still signs: readiness is about the job, not one request

    const healed = await rt.kw.reconcile('consumer');
    assert.deepEqual(healed.errors, []);
    assert.equal((await rt.kw.readiness()).ok, true);
  });

  it("not ready while a scope's signatures fail although its backend reports healthy; ready once a probe signature works", async () => {
    await rt.kw.reconcileAll('test');
    const gone = new KeywardenError('BACKEND_OBJECT_NOT_FOUND', 'no private key (injected)');
    rt.backend.failNext('sign', gone);
    rt.backend.failNext('sign', gone);
    await assert.rejects(sign(), (e) => e instanceof KeywardenError && e.code === 'BACKEND_OBJECT_NOT_FOUND');
    const r = await rt.kw.readiness();
    assert.equal(r.ok, false);
    assert.equal(r.checks['backend:hsm']?.ok, true);
    assert.match(
      r.checks['scope:consumer']?.detail ?? '',
      /its signatures fail since .*BACKEND_OBJECT_NOT_FOUND/,
    );
    // The next probe signature succeeds: the scope is ready again without a request.
    assert.equal((await rt.kw.readiness()).ok, true);
  });

  it('a backend that is down makes every scope on it not ready, naming the backend', async () => {
    await rt.kw.reconcileAll('test');
    rt.backend.down = true;
    const r = await rt.kw.readiness();
    assert.equal(r.ok, false);
    for (const scope of ['consumer', 'enterprise']) {
      assert.match(r.checks[`scope:${scope}`]?.detail ?? '', /backend hsm is not healthy/);
    }
    rt.backend.down = false;
    assert.equal((await rt.kw.readiness()).ok, true);
  });
});
