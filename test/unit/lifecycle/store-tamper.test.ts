/**
 * A store writer who cannot use the backend (docs/security-model.md), on fakes: rows edited
 * straight in the MemoryStore (bypassing the repository's rules, as SQL would) are refused by the
 * real KeyIntegrity: never published, never signed with, never accepted, and reported (the
 * integrity report, an audit record, `keys verify`, readiness). The SQL versions of these attacks
 * run in test/integration/key-integrity.test.ts.
 */
import * as assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto';
import pino from 'pino';
import { buildJwks } from '../../../src/lifecycle/build-jwks';
import { KeyIntegrity } from '../../../src/lifecycle/key-integrity';
import { thumbprint } from '../../../src/policy/thumbprint';
import type { KeyRecord, PublicJwk } from '../../../src/policy/key';
import type { KeyRefusalReason } from '../../../src/policy/key-integrity';
import { pickSigningKey } from '../../../src/policy/next-actions';
import {
  fakeRuntime,
  isCode,
  jwksKids,
  readyKeys,
  tokenSignedBy,
  type FakeRuntime,
} from '../../helpers/fakes';

const MIN = 60_000;

describe('store tampering on fakes: a store write never becomes a signing or validation capability', () => {
  let rt: FakeRuntime;

  beforeEach(async () => {
    rt = await fakeRuntime({ scopes: [{ name: 'consumer' }, { name: 'enterprise' }], auditIntegrity: true });
    await rt.kw.init('test');
  });
  afterEach(async () => rt.close());

  const keyOf = async (scope: string): Promise<KeyRecord> =>
    pickSigningKey(await readyKeys(rt, scope), rt.clock.now()) as KeyRecord;

  /** Not published, not held for verification, and `token` is refused in `scope`. */
  async function assertRefused(scope: string, kid: string, token: string) {
    assert.ok(!jwksKids(rt, scope).includes(kid), `the ${scope} JWKS publishes ${kid}`);
    assert.equal(rt.ctx.cache.view(scope)?.byKid.has(kid), false, `the ${scope} view holds ${kid}`);
    const r = await rt.kw.verify(scope, token, `${scope}-api`);
    assert.equal(r.valid, false, `a ${scope} token by ${kid} verified`);
  }

  /** The scope never signs with `kid` (it signs with another key, or with none). */
  async function assertNeverSignsWith(scope: string, kid: string) {
    try {
      const signed = await rt.kw.sign(scope, { claims: { sub: 'x', aud: `${scope}-api` } });
      assert.notEqual(signed.kid, kid, `scope ${scope} signed with the tampered key`);
    } catch (e) {
      assert.ok(isCode('NO_ACTIVE_KEY')(e), String(e));
    }
  }

  /** The refusal is in the report, recorded in the audit log, in `keys verify` and in readiness. */
  async function assertDetected(keyId: string, scope: string, reason: KeyRefusalReason) {
    const report = rt.kw.integrityReport();
    assert.ok(
      report?.refused.some((r) => r.keyId === keyId && r.scope === scope && r.reason === reason),
      `no ${reason} refusal of ${keyId} in ${JSON.stringify(report?.refused)}`,
    );
    const recorded = rt.audit
      .ofType('key.integrity-failed')
      .filter((e) => (e.data as { keyId: string }).keyId === keyId);
    assert.ok(
      recorded.some((e) => e.scope === scope && (e.data as { reason: string }).reason === reason),
      `no audit record of ${reason} for ${keyId}`,
    );
    const verify = await rt.kw.verifyKeys();
    assert.equal(verify.ok, false);
    assert.equal(verify.trust.get(keyId), 'refused');
    const ready = await rt.kw.readiness();
    assert.equal(ready.ok, false);
    assert.match(ready.checks.keys?.detail ?? '', new RegExp(`scope ${scope}: 1 ${reason}`));
  }

  it('untampered: every key is trusted and readiness is ok (the assertions below are not vacuous)', async () => {
    const verify = await rt.kw.verifyKeys();
    assert.equal(verify.ok, true);
    assert.deepEqual([...new Set(verify.trust.values())], ['trusted']);
    assert.equal((await rt.kw.readiness()).ok, true);
    const key = await keyOf('consumer');
    const token = await tokenSignedBy(rt, key, 'consumer');
    assert.ok((await rt.kw.verify('consumer', token, 'consumer-api')).valid);
    assert.deepEqual(rt.audit.ofType('key.integrity-failed'), []);
  });

  it('expiresAt moved a few minutes later (within the policy): only the seal tells, and it does', async () => {
    const key = await keyOf('consumer');
    const token = await tokenSignedBy(rt, key, 'consumer');
    rt.store.tamper.update(key.id, {
      retireAt: new Date(key.retireAt.getTime() + 4 * MIN),
      expiresAt: new Date(key.expiresAt.getTime() + 4 * MIN),
    });
    await rt.ctx.cache.refresh(); // not forced: the write moved the key set version
    await assertRefused('consumer', key.kid!, token);
    await assertNeverSignsWith('consumer', key.kid!);
    await assertDetected(key.id, 'consumer', 'seal-invalid');
    // Recorded once per finding, however often the keys reload.
    await rt.ctx.cache.refresh(true);
    assert.equal(
      rt.audit.ofType('key.integrity-failed').filter((e) => (e.data as { keyId: string }).keyId === key.id)
        .length,
      1,
    );
    // Reconcile does not count the refused row: the scope gets a fresh key.
    const report = await rt.kw.reconcile('consumer');
    assert.deepEqual(
      report.done.map((d) => [d.action, d.detail]),
      [['create', 'no-active-key']],
    );
    const signed = await rt.kw.sign('consumer', { claims: { sub: 'x', aud: 'consumer-api' } });
    assert.notEqual(signed.kid, key.kid);
  });

  it('expiresAt moved an hour later: a policy violation, sealed or not', async () => {
    const key = await keyOf('consumer');
    rt.store.tamper.update(key.id, {
      retireAt: new Date(key.retireAt.getTime() + 60 * MIN),
      expiresAt: new Date(key.expiresAt.getTime() + 60 * MIN),
    });
    await rt.ctx.cache.refresh();
    await assertRefused('consumer', key.kid!, await tokenSignedBy(rt, key, 'consumer'));
    await assertDetected(key.id, 'consumer', 'policy-violation');
  });

  it('re-scoped (consumer -> enterprise): enterprise neither publishes, signs with nor accepts it', async () => {
    const key = await keyOf('consumer');
    const enterprise = await keyOf('enterprise');
    rt.store.tamper.update(key.id, { scope: 'enterprise' });
    await rt.ctx.cache.refresh();
    await assertRefused('enterprise', key.kid!, await tokenSignedBy(rt, key, 'enterprise'));
    await assertNeverSignsWith('enterprise', key.kid!);
    await assertDetected(key.id, 'enterprise', 'label-mismatch');
    // Enterprise's own key is unaffected.
    assert.deepEqual(jwksKids(rt, 'enterprise'), [enterprise.kid]);
    assert.equal(
      (await rt.kw.sign('enterprise', { claims: { sub: 'x', aud: 'enterprise-api' } })).kid,
      enterprise.kid,
    );
  });

  it('public key and kid replaced by the attacker’s: the attacker’s tokens never verify', async () => {
    const key = await keyOf('consumer');
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' }) as PublicJwk;
    const publicJwk: PublicJwk = { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    const kid = await thumbprint(publicJwk);
    rt.store.tamper.update(key.id, { publicJwk, kid });
    await rt.ctx.cache.refresh();
    const now = Math.floor(rt.clock.now().getTime() / 1000);
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const input = `${b64({ alg: 'ES256', kid, typ: 'JWT' })}.${b64({
      iss: 'https://issuer.test/consumer',
      aud: 'consumer-api',
      sub: 'mallory',
      iat: now,
      nbf: now,
      exp: now + 60,
      jti: randomUUID(),
    })}`;
    const sig = cryptoSign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    await assertRefused('consumer', kid, `${input}.${sig.toString('base64url')}`);
    await assertNeverSignsWith('consumer', kid);
    await assertDetected(key.id, 'consumer', 'public-key-mismatch');
  });

  it('revoked, then revokedAt cleared: the key stays dead, its backend object is gone', async () => {
    const key = await keyOf('consumer');
    const before = await tokenSignedBy(rt, key, 'consumer');
    const r = await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    assert.equal(r.destroyed, true);
    rt.store.tamper.update(key.id, { revokedAt: null, revokedReason: null, destroyedAt: null });
    await rt.ctx.cache.refresh();
    await assertRefused('consumer', key.kid!, before);
    await assertNeverSignsWith('consumer', key.kid!);
    await assertDetected(key.id, 'consumer', 'object-missing');
    // Nor does a reconcile take the row for a live key: it neither destroys nor recreates anything for it.
    const report = await rt.kw.reconcile('consumer');
    assert.deepEqual(report.done, []);
  });

  it('a revocation is not dodged by pointing the row elsewhere first: the key is destroyed by its label', async () => {
    const key = await keyOf('consumer');
    const token = await tokenSignedBy(rt, key, 'consumer');
    // The attacker points the row at nothing, waits for the operator's revocation, then undoes both.
    const elsewhere = rt.backend.planKey({ scope: 'consumer', keyId: key.id });
    rt.store.tamper.update(key.id, { backendRef: elsewhere });
    await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    assert.equal(await rt.backend.exists(key.backendRef), false, 'the real key survived the revocation');
    rt.store.tamper.update(key.id, {
      backendRef: key.backendRef,
      revokedAt: null,
      revokedReason: null,
      destroyedAt: null,
    });
    await rt.ctx.cache.refresh();
    await assertRefused('consumer', key.kid!, token);
    await assertNeverSignsWith('consumer', key.kid!);
    await assertDetected(key.id, 'consumer', 'object-missing');
  });

  it('a row written since the last reload does not stand in for a key: revoking the only real one still replaces it', async () => {
    const key = await keyOf('consumer');
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' }) as PublicJwk;
    const publicJwk: PublicJwk = { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    const id = randomUUID();
    // Looks active, points nowhere; this process has not reloaded since (no refresh here).
    rt.store.tamper.insert({
      ...key,
      id,
      kid: await thumbprint(publicJwk),
      publicJwk,
      backendRef: rt.backend.planKey({ scope: 'consumer', keyId: id }),
      createdBy: 'mallory',
    });
    const r = await rt.kw.revoke(key.kid!, 'leaked', 'operator');
    assert.ok(r.replacement, 'the inserted row was counted as a remaining active key');
    assert.equal(
      (await rt.kw.sign('consumer', { claims: { sub: 'x', aud: 'consumer-api' } })).kid,
      r.replacement.kid,
    );
  });

  it('a made-up row never destroys another key: not as an expired row, not as a crash leftover', async () => {
    const victim = await keyOf('consumer');
    const long = new Date(rt.clock.now().getTime() - 400 * 86400_000);
    // An enterprise row long past its destroy time, and a `generating` leftover, both pointing at
    // consumer's signing key: reconcile destroys the objects of its own rows only.
    rt.store.tamper.insert({
      ...victim,
      id: randomUUID(),
      scope: 'enterprise',
      publishAt: long,
      activateAt: long,
      retireAt: long,
      expiresAt: long,
      createdBy: 'mallory',
    });
    rt.store.tamper.insert({
      ...victim,
      id: randomUUID(),
      kid: null,
      publicJwk: null,
      status: 'generating',
      createdBy: 'mallory',
    });
    await rt.ctx.cache.refresh();
    await rt.kw.reconcile('enterprise');
    await rt.kw.reconcile('consumer');
    assert.equal(await rt.backend.exists(victim.backendRef), true, 'a made-up row destroyed a live key');
    assert.equal(
      (await rt.kw.sign('consumer', { claims: { sub: 'x', aud: 'consumer-api' } })).kid,
      victim.kid,
    );
  });

  it('an inserted row with the attacker’s public key is never published; a JWKS built from raw rows would publish it', async () => {
    const template = await keyOf('enterprise');
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' }) as PublicJwk;
    const publicJwk: PublicJwk = { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    const id = randomUUID();
    const row: KeyRecord = {
      ...template,
      id,
      kid: await thumbprint(publicJwk),
      publicJwk,
      backendRef: rt.backend.planKey({ scope: 'enterprise', keyId: id }),
      createdBy: 'mallory',
    };
    rt.store.tamper.insert(row);
    const scope = rt.config.scopes.find((s) => s.name === 'enterprise')!;
    assert.ok(
      buildJwks(scope, await rt.store.keys.listByScope('enterprise'), rt.clock.now()).kids.includes(row.kid!),
    );
    await rt.ctx.cache.refresh();
    assert.ok(!jwksKids(rt, 'enterprise').includes(row.kid!));
    assert.deepEqual(jwksKids(rt, 'enterprise'), [template.kid]);
    await assertDetected(id, 'enterprise', 'object-missing');
  });

  it('operators are never told an inserted row signs: scopes show and init name the trusted key', async () => {
    const template = await keyOf('enterprise');
    rt.clock.advanceSeconds(60);
    const id = randomUUID();
    // Activated after the real key, so a signing key picked from raw rows would be this one.
    rt.store.tamper.insert({
      ...template,
      id,
      kid: 'forged-kid-0000000000000000000000000000000',
      activateAt: rt.clock.now(),
      backendRef: rt.backend.planKey({ scope: 'enterprise', keyId: id }),
      createdBy: 'mallory',
    });
    await rt.ctx.cache.refresh();
    assert.equal((await rt.kw.scopeDetails('enterprise')).signingKid, template.kid);
    const init = await rt.kw.init('test');
    assert.equal(init.scopes.find((s) => s.scope === 'enterprise')?.signingKid, template.kid);
  });

  it('a deleted row is reported at the next reload as a backend key whose row is missing', async () => {
    const key = await keyOf('consumer');
    const token = await tokenSignedBy(rt, key, 'consumer');
    rt.store.tamper.remove(key.id);
    await rt.ctx.cache.refresh();
    assert.deepEqual(
      rt.kw.integrityReport()?.missingRows.map((m) => [m.keyId, m.scope, m.backend]),
      [[key.id, 'consumer', 'hsm']],
    );
    const recorded = rt.audit.ofType('key.row-missing');
    assert.deepEqual(
      recorded.map((e) => (e.data as { keyId: string }).keyId),
      [key.id],
    );
    assert.equal((await rt.kw.verifyKeys()).ok, false);
    const ready = await rt.kw.readiness();
    assert.match(ready.checks.keys?.detail ?? '', /1 backend key\(s\) whose row is missing/);
    assert.equal((await rt.kw.verify('consumer', token, 'consumer-api')).valid, false);
    await rt.kw.reconcile('consumer');
    await assertNeverSignsWith('consumer', key.kid!);
  });
});

describe('store tampering on fakes, seen by a restarted process whose first pass checks its seals on worker threads', function () {
  this.timeout(120_000);

  it('1,100 scopes: re-timed, re-scoped, re-keyed and re-pointed rows are refused; every other row is trusted', async () => {
    const scopes = Array.from({ length: 1100 }, (_, i) => ({ name: `t${String(i).padStart(4, '0')}` }));
    const rt = await fakeRuntime({ scopes });
    try {
      // Every scope at once, so the key cache's reloads after each new key coalesce (one at a
      // time, in order, reloads every row of this store: 18 s instead of 1.5 s).
      await Promise.all(scopes.map((s) => rt.kw.reconcile(s.name)));
      const rows = await rt.store.keys.listAll();
      assert.equal(rows.length, 1100);
      assert.ok(rows.every((r) => r.status === 'ready'));
      const [retimed, rescoped, rekeyed, repointed] = [rows[7]!, rows[300]!, rows[650]!, rows[1001]!];
      rt.store.tamper.update(retimed.id, { expiresAt: new Date(retimed.expiresAt.getTime() + 4 * MIN) });
      rt.store.tamper.update(rescoped.id, { scope: rows[301]!.scope });
      rt.store.tamper.update(rekeyed.id, { publicJwk: rows[651]!.publicJwk, kid: rows[651]!.kid });
      // The backend's objects are the attacker's to read, not to write: the row points at another
      // row's object (its label names that row), so only the row's own seal could vouch for it.
      rt.store.tamper.update(repointed.id, { backendRef: rows[1002]!.backendRef });

      // A new process: its integrity check has confirmed nothing yet, so every live row's seal is
      // verified, 1,100 at once (SEAL_THREADS_FROM is 1,000).
      const warnings: string[] = [];
      const log = pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) });
      const fresh = new KeyIntegrity({
        config: rt.config,
        clock: rt.clock,
        log,
        backend: async () => rt.backend,
        rowExists: async (id) => (await rt.store.keys.findById(id)) !== null,
        audit: null,
      });
      const report = await fresh.check(await rt.store.keys.listAll());
      assert.deepEqual(
        warnings.filter((w) => w.includes('worker threads')),
        [],
        'the seal checks fell back from worker threads',
      );
      const refused = new Map(report.refused.map((r) => [r.keyId, r.reason]));
      assert.deepEqual(
        new Map([
          [retimed.id, 'seal-invalid'],
          [rescoped.id, 'label-mismatch'],
          [rekeyed.id, 'public-key-mismatch'],
          [repointed.id, 'label-mismatch'],
        ]),
        refused,
      );
      assert.equal(report.usable.length, 1096);
      assert.ok(report.usable.every((r) => !refused.has(r.id)));
    } finally {
      await rt.close();
    }
  });
});
