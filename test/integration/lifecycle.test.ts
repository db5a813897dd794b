import * as assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { reconcileScope } from '../../src/lifecycle/reconcile-scope';
import { revokeKey } from '../../src/lifecycle/revoke-key';
import { rotateScope } from '../../src/lifecycle/rotate-scope';
import { signToken } from '../../src/lifecycle/sign-token';
import { verifyToken } from '../../src/lifecycle/verify-token';
import type { KeyRecord } from '../../src/policy/key';
import { effectiveState } from '../../src/policy/key-state';
import { pickSigningKey } from '../../src/policy/next-actions';
import { timelineForNewKey } from '../../src/policy/timeline';
import { leaveKeyBehind } from '../helpers/leftover-key';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('lifecycle on a real SoftHSM2 token, driven by a fake clock', function () {
  this.timeout(120_000);
  let t: TestRuntime;
  const jwksKids = (scope: string) => {
    const view = t.ctx.cache.view(scope)!;
    return (
      JSON.parse(t.ctx.cache.jwks(view, t.clock.now()).body) as { keys: { kid: string; iss: string }[] }
    ).keys;
  };
  const ready = async (scope: string) =>
    (await t.ctx.keys.listByScope(scope)).filter((k) => k.status === 'ready');
  const sign = (scope: string, claims: Record<string, unknown> = {}) =>
    signToken(t.ctx, scope, { claims: { sub: 'alice', aud: `${scope}-api`, ...claims } });

  beforeEach(async () => {
    t = await startTestRuntime([{ name: 'consumer' }, { name: 'enterprise' }]);
    await reconcileScope(t.ctx, 'consumer');
    await reconcileScope(t.ctx, 'enterprise');
  });
  afterEach(async () => t.close());

  it('creates a first key that signs at once; the token verifies; the JWKS holds it with the scope iss', async () => {
    const [k] = await ready('consumer');
    assert.equal(effectiveState(k!, t.clock.now()), 'active');
    const { token, kid } = await sign('consumer');
    assert.equal(kid, k!.kid);
    const r = await verifyToken(t.ctx, 'consumer', token, 'consumer-api');
    assert.ok(r.valid, JSON.stringify(r));
    assert.deepEqual(
      jwksKids('consumer').map((j) => [j.kid, j.iss]),
      [[k!.kid, 'https://issuer.test/consumer']],
    );
  });

  it('is idempotent: a second reconcile changes nothing', async () => {
    const before = await t.ctx.keys.listAll();
    const r = await reconcileScope(t.ctx, 'consumer');
    assert.deepEqual(r.done, []);
    assert.equal((await t.ctx.keys.listAll()).length, before.length);
  });

  it('hard expiry (I1, I2): at expiresAt the key leaves the JWKS, cannot sign, and its tokens fail, with no scheduler running', async () => {
    const [k] = await ready('consumer');
    const { token } = await sign('consumer');
    t.clock.set(k!.retireAt); // retired: still published, still verifies, no longer signs
    assert.ok((await verifyToken(t.ctx, 'consumer', token, 'consumer-api')).valid === false); // token exp (5m) passed
    t.clock.set(new Date(k!.retireAt.getTime() - 1000));
    const late = await sign('consumer');
    t.clock.set(k!.retireAt);
    assert.deepEqual(
      jwksKids('consumer').map((j) => j.kid),
      [k!.kid],
    );
    await assert.rejects(sign('consumer'), { code: 'NO_ACTIVE_KEY' });
    assert.ok((await verifyToken(t.ctx, 'consumer', late.token, 'consumer-api')).valid);
    t.clock.set(k!.expiresAt);
    assert.deepEqual(jwksKids('consumer'), []);
    await assert.rejects(sign('consumer'), { code: 'NO_ACTIVE_KEY' });
    const r = await verifyToken(t.ctx, 'consumer', late.token, 'consumer-api');
    assert.ok(!r.valid && r.reason === 'key_expired', JSON.stringify(r));
  });

  it('cross-scope (I5): a consumer token fails in enterprise, even with enterprise iss forged into it', async () => {
    const { token, kid } = await sign('consumer');
    const plain = await verifyToken(t.ctx, 'enterprise', token, 'consumer-api');
    assert.ok(!plain.valid && plain.reason === 'kid_unknown', JSON.stringify(plain));
    // Forge: enterprise's iss and audience, signed inside the HSM by consumer's real key.
    const [ck] = await ready('consumer');
    const now = Math.floor(t.clock.now().getTime() / 1000);
    const input = `${b64({ alg: 'ES256', kid, typ: 'JWT' })}.${b64({ iss: 'https://issuer.test/enterprise', aud: 'enterprise-api', iat: now, nbf: now, exp: now + 60, jti: randomUUID() })}`;
    const sig = await (await t.ctx.backend('hsm')).sign(ck!.backendRef, 'ES256', Buffer.from(input));
    const forged = `${input}.${Buffer.from(sig).toString('base64url')}`;
    const r = await verifyToken(t.ctx, 'enterprise', forged, 'enterprise-api');
    assert.ok(!r.valid && r.reason === 'kid_unknown', JSON.stringify(r));
    const r2 = await verifyToken(t.ctx, 'consumer', forged, 'enterprise-api');
    assert.ok(!r2.valid && r2.reason === 'issuer_mismatch', JSON.stringify(r2));
  });

  it('revoke: the key leaves the JWKS, its tokens fail, and a replacement signs at once', async () => {
    const { token, kid } = await sign('consumer');
    const r = await revokeKey(t.ctx, kid, 'leaked in a crash dump', 'test');
    assert.ok(r.replacement);
    assert.deepEqual(
      jwksKids('consumer').map((j) => j.kid),
      [r.replacement.kid],
    );
    const v = await verifyToken(t.ctx, 'consumer', token, 'consumer-api');
    assert.ok(!v.valid && v.reason === 'key_revoked', JSON.stringify(v));
    assert.equal((await sign('consumer')).kid, r.replacement.kid);
    // Bad input changes nothing.
    const count = (await t.ctx.keys.listAll()).length;
    await assert.rejects(revokeKey(t.ctx, kid, 'again', 'test'), { code: 'KEY_NOT_USABLE' });
    await assert.rejects(revokeKey(t.ctx, 'no-such-kid-at-all', 'x', 'test'), { code: 'KEY_NOT_FOUND' });
    await assert.rejects(revokeKey(t.ctx, r.replacement.kid!, '  ', 'test'), { code: 'REQUEST_INVALID' });
    assert.equal((await t.ctx.keys.listAll()).length, count);
  });

  it('revoke of an expired key is refused and changes nothing', async () => {
    const [k] = await ready('consumer');
    t.clock.set(k!.expiresAt);
    await assert.rejects(revokeKey(t.ctx, k!.kid!, 'late', 'test'), { code: 'KEY_NOT_USABLE' });
    assert.equal((await t.ctx.keys.findById(k!.id))?.revokedAt, null);
  });

  it('operator rotation pre-publishes: the new key is in the JWKS before it signs', async () => {
    const [old] = await ready('consumer');
    const next = await rotateScope(t.ctx, 'consumer', 'test');
    assert.deepEqual(
      jwksKids('consumer')
        .map((j) => j.kid)
        .sort(),
      [old!.kid, next.kid].sort(),
    );
    assert.equal((await sign('consumer')).kid, old!.kid);
    t.clock.set(next.activateAt);
    const { token, kid } = await sign('consumer');
    assert.equal(kid, next.kid);
    assert.ok((await verifyToken(t.ctx, 'consumer', token, 'consumer-api')).valid);
  });

  it('crash safety: reconcile completes a leftover only when its key is sealed over the row, and removes the rest', async () => {
    const scope = t.config.scopes[0]!;
    const backend = await t.ctx.backend('hsm');
    const row = (id: string): KeyRecord => ({
      id,
      kid: null,
      scope: scope.name,
      alg: 'ES256',
      status: 'generating',
      backendRef: backend.planKey({ scope: scope.name, keyId: id }),
      publicJwk: null,
      ...timelineForNewKey(scope.policy, t.clock.now(), { immediate: false }),
      revokedAt: null,
      revokedReason: null,
      destroyedAt: null,
      createdAt: t.clock.now(),
      createdBy: 'crash-test',
    });
    const before = row(randomUUID()); // killed before the backend call
    const unsealed = row(randomUUID()); // killed after the backend made the key, before sealing it
    const sealed = row(randomUUID()); // killed after sealing, before completing the row
    const edited = row(randomUUID()); // sealed, then its leftover row's expiry moved later in the store
    for (const r of [before, unsealed, sealed, edited]) await t.ctx.keys.insertGenerating(r, t.clock.now());
    await leaveKeyBehind(backend, unsealed, 'generated');
    await leaveKeyBehind(backend, sealed, 'sealed');
    await leaveKeyBehind(backend, edited, 'sealed');
    await t.rt.ds.query('UPDATE keys SET expires_at = expires_at + 60000 WHERE id = ?', [edited.id]);
    const report = await reconcileScope(t.ctx, scope.name);
    assert.deepEqual(
      report.done
        .filter((d) => d.action === 'resolve-generating')
        .map((d) => d.detail)
        .sort(),
      ['completed', 'removed', 'removed', 'removed'],
    );
    for (const r of [before, unsealed, edited]) assert.equal(await t.ctx.keys.findById(r.id), null);
    // A removed leftover's key is destroyed with it: nothing of it remains to be trusted.
    assert.equal(await backend.exists(unsealed.backendRef), false);
    assert.equal(await backend.exists(edited.backendRef), false);
    const completed = await t.ctx.keys.findById(sealed.id);
    assert.equal(completed?.status, 'ready');
    assert.ok(completed?.kid);
    assert.ok(t.ctx.cache.view(scope.name)?.byKid.has(completed.kid), 'the completed key is trusted');
    assert.equal((await t.ctx.keys.listAll()).filter((k) => k.status === 'generating').length, 0);
    assert.ok(pickSigningKey(await ready(scope.name), t.clock.now()));
  });

  it('simulated months: 30 rotations, always one signing key, the next key published ahead, every token verifies until exp', async () => {
    const scope = 'consumer';
    const tokens: { token: string; exp: number }[] = [];
    const start = t.clock.now().getTime();
    const end = start + 30 * 10 * 60_000; // activeFor 10m
    let steps = 0;
    while (t.clock.now().getTime() < end) {
      await reconcileScope(t.ctx, scope);
      const now = t.clock.now();
      const keys = await ready(scope);
      const signing = pickSigningKey(keys, now);
      assert.ok(signing, `no signing key at ${now.toISOString()}`);
      const published = jwksKids(scope).map((j) => j.kid);
      assert.ok(published.includes(signing.kid!));
      for (const k of keys) {
        const s = effectiveState(k, now);
        assert.equal(
          published.includes(k.kid!),
          s === 'pending' || s === 'active' || s === 'retired',
          `${k.kid} ${s}`,
        );
      }
      // Within prepublish of retirement, the successor is already published.
      if (signing.retireAt.getTime() - now.getTime() <= 120_000) {
        assert.ok(
          keys.some((k) => effectiveState(k, now) === 'pending'),
          'successor not pre-published',
        );
      }
      const signed = await sign(scope);
      tokens.push({ token: signed.token, exp: signed.expiresAt.getTime() });
      for (const tk of tokens) {
        if (tk.exp <= now.getTime()) continue;
        const r = await verifyToken(t.ctx, scope, tk.token, `${scope}-api`);
        assert.ok(r.valid, `a valid token failed at ${now.toISOString()}: ${JSON.stringify(r)}`);
      }
      t.clock.advanceSeconds(47); // an awkward step that lands between boundaries
      steps++;
    }
    const all = await ready(scope);
    assert.ok(all.length >= 30, `${all.length} keys`);
    assert.ok(all.filter((k) => k.destroyedAt !== null).length >= 25, 'old backend objects destroyed');
    assert.ok(steps > 300);
  });
});
