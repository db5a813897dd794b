import * as assert from 'node:assert/strict';
import { buildClaims, buildClaimsPayload, CLAIM_LIMITS } from '../../../src/policy/claims';
import type { ScopeConfig } from '../../../src/policy/scope';

const scope: ScopeConfig = {
  name: 'demo',
  issuer: 'https://issuer.test/demo',
  audiences: ['api', 'admin'],
  alg: 'ES256',
  rsaBits: 2048,
  backend: 'hsm',
  schedule: '* * * * *',
  production: true,
  policy: {
    prepublishSeconds: 600,
    activeForSeconds: 86400,
    verifyGraceSeconds: 3600,
    maxTokenTtlSeconds: 900,
    destroyAfterSeconds: 0,
    maxKeyLifetimeSeconds: 172800,
    jwksMaxAgeSeconds: 300,
  },
};
const now = new Date(Date.UTC(2026, 0, 1));
const nowS = now.getTime() / 1000;
const farExpiry = new Date(now.getTime() + 86400_000);
const build = (claims: unknown, ttlSeconds?: number, keyExpiresAt = farExpiry) =>
  buildClaims(scope, { claims, ttlSeconds }, now, keyExpiresAt, 'jti-1');
const refused = (claims: unknown, re: RegExp, ttl?: number) =>
  assert.throws(
    () => build(claims, ttl),
    (e: { code?: string; message: string }) => e.code === 'CLAIMS_INVALID' && re.test(e.message),
  );

describe('token claim rules', () => {
  it("forces iss to the scope's issuer and sets iat, nbf, exp and jti", () => {
    const c = build({ sub: 'alice', aud: 'api' });
    assert.deepEqual(c, {
      sub: 'alice',
      aud: 'api',
      iss: scope.issuer,
      iat: nowS,
      nbf: nowS,
      exp: nowS + 900,
      jti: 'jti-1',
    });
    assert.equal(build({ aud: 'api', iss: scope.issuer }).iss, scope.issuer);
  });

  it('refuses a different iss instead of overwriting it (I5)', () =>
    refused({ aud: 'api', iss: 'https://issuer.test/other' }, /iss/));

  it('requires aud, and only audiences of this scope', () => {
    refused({ sub: 'a' }, /aud/);
    refused({ aud: [] }, /aud/);
    refused({ aud: 'other-api' }, /other-api/);
    refused({ aud: ['api', 'other'] }, /other/);
    refused({ aud: 7 }, /aud/);
    assert.deepEqual(build({ aud: ['api', 'admin'] }).aud, ['api', 'admin']);
  });

  it('refuses server-set claims', () => {
    for (const k of ['iat', 'nbf', 'exp', 'jti']) refused({ aud: 'api', [k]: 1 }, new RegExp(k));
  });

  it('caps exp at maxTokenTtl and at the key expiry', () => {
    assert.equal(build({ aud: 'api' }, 60).exp, nowS + 60);
    assert.equal(build({ aud: 'api' }, 10_000).exp, nowS + 900);
    assert.equal(build({ aud: 'api' }, undefined, new Date(now.getTime() + 120_000)).exp, nowS + 120);
    assert.throws(() => build({ aud: 'api' }, undefined, new Date(now.getTime() + 500)), {
      code: 'CLAIMS_INVALID',
    });
    for (const bad of [0, -5, 1.5]) refused({ aud: 'api' }, /ttlSeconds/, bad);
  });

  it('bounds claims in shape, depth, members and size', () => {
    for (const bad of [null, 'x', 42, [], true]) refused(bad, /JSON object/);
    let deep: Record<string, unknown> = { v: 1 };
    for (let i = 0; i < CLAIM_LIMITS.maxDepth + 1; i++) deep = { d: deep };
    refused({ aud: 'api', deep }, /deeper/);
    refused({ aud: 'api', big: 'x'.repeat(CLAIM_LIMITS.maxBytes) }, /bytes/);
    const many = Object.fromEntries(
      Array.from({ length: CLAIM_LIMITS.maxMembers + 1 }, (_, i) => [`c${i}`, i]),
    );
    refused({ aud: 'api', ...many }, /members/);
  });

  describe('as payload text (the sign path)', () => {
    const payload = (claims: unknown, ttlSeconds?: number, keyExpiresAt = farExpiry) =>
      buildClaimsPayload(scope, { claims, ttlSeconds }, now, keyExpiresAt, 'jti-"1"');
    const copied = (claims: unknown, ttlSeconds?: number, keyExpiresAt = farExpiry) =>
      JSON.stringify(buildClaims(scope, { claims, ttlSeconds }, now, keyExpiresAt, 'jti-"1"'));

    it('is byte for byte the serialised claims, for claims as requests send them', () => {
      // As a request's body parser makes them: objects from JSON text.
      const bodies = [
        { aud: 'api' },
        { sub: 'user-1', aud: 'api', scope: 'read' },
        { aud: ['api', 'admin'], iss: scope.issuer, sub: 'a' },
        { iss: scope.issuer, aud: 'api' },
        { 2: 'two', aud: 'api', 1: 'one', x: { 9: 1, a: [1, '\u2028', { b: null }] } },
        { name: 'Zoë 😀 "quoted" \\ back', aud: 'admin', n: -0.5e-7, big: 1e21 },
        { aud: 'api', nested: { iat: 1, exp: 2, iss: 'elsewhere' } },
      ].map((o) => JSON.stringify(o));
      for (const body of bodies) {
        for (const ttl of [undefined, 60]) {
          const claims = JSON.parse(body) as unknown;
          const p = payload(claims, ttl);
          assert.equal(p.json, copied(claims, ttl), body);
          assert.equal(p.exp, (JSON.parse(p.json) as { exp: number }).exp);
        }
      }
      const keyEnd = new Date(now.getTime() + 120_000);
      assert.equal(
        payload({ aud: 'api' }, undefined, keyEnd).json,
        copied({ aud: 'api' }, undefined, keyEnd),
      );
    });

    it('adds iss once, whether or not the request carries it', () => {
      for (const claims of [{ aud: 'api' }, { iss: scope.issuer, aud: 'api' }]) {
        const json = payload(claims).json;
        assert.equal(json.split('"iss":').length, 2, json);
        assert.equal((JSON.parse(json) as { iss: string }).iss, scope.issuer);
      }
      // An iss JSON.stringify does not see (inherited) is added, as a copy would.
      const inherited = Object.create({ iss: scope.issuer }) as Record<string, unknown>;
      inherited.aud = 'api';
      assert.equal(payload(inherited).json, copied(inherited));
    });

    it('refuses what buildClaims refuses', () => {
      const bad: unknown[] = [
        null,
        [],
        { sub: 'a' },
        { aud: 'other' },
        { aud: 'api', iss: 'https://issuer.test/other' },
        { aud: 'api', jti: 'x' },
        { aud: 'api', big: 'x'.repeat(CLAIM_LIMITS.maxBytes) },
      ];
      for (const claims of bad) {
        assert.throws(() => payload(claims), { code: 'CLAIMS_INVALID' });
        assert.throws(() => copied(claims), { code: 'CLAIMS_INVALID' });
      }
      assert.throws(() => payload({ aud: 'api' }, 0), { code: 'CLAIMS_INVALID' });
    });

    it('serialises a claims object with toJSON as a copy would', () => {
      const odd = { aud: 'api', toJSON: () => 'not an object' };
      assert.equal(payload(odd).json, copied(odd));
    });
  });
});
