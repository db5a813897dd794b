/**
 * The token service in-process: the real lifecycle, store, SoftHSM2 token and HTTP server on
 * loopback, with a FakeClock so key states can be reached without sleeping. Covers what needs
 * time travel (retired and expired keys, pending and revoked keys) against both the verify
 * route and the relying-party library, plus the client secret store and the auth cache.
 */
import { strict as assert } from 'node:assert';
import type { FastifyInstance } from 'fastify';
import { parseGrantOptions } from '../../src/cli/clients-command';
import { ClientAuthenticator } from '../../src/http/auth';
import { withAuthenticator } from '../helpers/auth';
import { createHttpServer } from '../../src/daemon';
import { addClient, checkClientSecret, removeClient, rotateClientSecret } from '../../src/lifecycle/clients';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { revokeKey } from '../../src/lifecycle/revoke-key';
import { rotateScope } from '../../src/lifecycle/rotate-scope';
import { sealClients } from '../../src/lifecycle/seal-clients';
import { verifySecret } from '../../src/lifecycle/secret-hash';
import { FakeClock } from '../../src/policy/clock';
import { hasCode } from '../../src/policy/errors';
import type { KeyRecord } from '../../src/policy/key';
import { createVerifier } from '@keywarden/verify';
import { signingKeyOf, signWithKey } from '../helpers/daemon';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

const SCOPES = ['consumer', 'enterprise', 'staging'] as const;

describe('token service (in-process, FakeClock)', function () {
  this.timeout(120_000);
  let trt: TestRuntime;
  let app: FastifyInstance;
  let base: string;
  let secret: string;

  const post = async (path: string, body: unknown, bearer = secret) => {
    const r = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  const s = (d: Date) => Math.floor(d.getTime() / 1000);
  const issuer = (scope: string) => `https://issuer.test/${scope}`;
  const aud = (scope: string) => `${scope}-api`;

  /** The verify route's and the library's answer for one token. */
  async function bothVerdicts(scope: string, token: string, typ?: string) {
    const route = await post(`/v1/scopes/${scope}/verify`, {
      token,
      audience: aud(scope),
      ...(typ !== undefined ? { typ } : {}),
    });
    assert.equal(route.status, 200);
    const verifier = createVerifier({
      issuer: issuer(scope),
      audience: aud(scope),
      jwksUri: `${base}/scopes/${scope}/.well-known/jwks.json`,
      clock: trt.clock,
      ...(typ !== undefined ? { typ } : {}),
    });
    const lib = await verifier.verify(token);
    return {
      route: route.body.valid === true ? 'valid' : (route.body.reason as string),
      library: lib.valid ? 'valid' : lib.reason,
    };
  }

  before(async () => {
    trt = await startTestRuntime(
      SCOPES.map((name) => ({ name })),
      { clock: new FakeClock(Date.UTC(2026, 5, 1, 12, 0, 0)) },
    );
    await reconcileAll(trt.ctx, 'test');
    await trt.ctx.cache.refresh(true);
    app = createHttpServer(trt.kw, { publicBaseUrl: 'http://127.0.0.1' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const issued = await addClient(
      trt.ctx,
      'all-scopes',
      Object.fromEntries(SCOPES.map((sc) => [sc, ['sign', 'verify']])),
      'test',
    );
    secret = issued.secret;
  });

  after(async () => {
    await app?.close();
    await trt?.close();
  });

  describe('CLI grant syntax', () => {
    it('takes SCOPE:GRANTS, and --scope with unprefixed grants, mixed', () => {
      assert.deepEqual(parseGrantOptions([], ['consumer:sign,verify', 'enterprise:verify']), {
        consumer: ['sign', 'verify'],
        enterprise: ['verify'],
      });
      assert.deepEqual(parseGrantOptions(['a', 'b'], ['sign', 'c:verify']), {
        a: ['sign'],
        b: ['sign'],
        c: ['verify'],
      });
    });

    it('refuses grants without a scope, scopes without grants, and empty parts', () => {
      for (const [scopes, grants] of [
        [[], ['sign']],
        [['a'], ['a:sign']],
        [[], [':sign']],
        [[], ['a:']],
        [[], ['a:sign,,verify']],
      ] as [string[], string[]][]) {
        assert.throws(
          () => parseGrantOptions(scopes, grants),
          (e) => hasCode(e, 'REQUEST_INVALID'),
          JSON.stringify([scopes, grants]),
        );
      }
    });
  });

  describe('client secrets', () => {
    it('stores only an scrypt hash with a per-secret salt, and the secret names its client', async () => {
      const a = await addClient(trt.ctx, 'hash-a', { consumer: ['sign'] }, 'test');
      const b = await addClient(trt.ctx, 'hash-b', { consumer: ['sign'] }, 'test');
      assert.match(a.secret, /^kw_[0-9a-f-]{36}_[A-Za-z0-9_-]{43}$/);
      assert.ok(a.secret.startsWith(`kw_${a.client.id}_`));
      const rows = (await trt.rt.ds.query('SELECT id, secret_hash FROM clients WHERE name IN (?, ?)', [
        'hash-a',
        'hash-b',
      ])) as { id: string; secret_hash: string }[];
      assert.equal(rows.length, 2);
      const hashes = rows.map((r) => r.secret_hash);
      for (const h of hashes) {
        assert.match(h, /^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
        assert.ok(!h.includes(a.secret.slice(-43)) && !h.includes(b.secret.slice(-43)));
      }
      const salts = hashes.map((h) => h.split('$')[4]);
      assert.notEqual(salts[0], salts[1]);
      const hashA = rows.find((r) => r.id === a.client.id)!.secret_hash;
      assert.equal(await verifySecret(a.secret, hashA), true);
      assert.equal(await verifySecret(b.secret, hashA), false);
      assert.equal(
        await verifySecret(a.secret.slice(0, -1) + (a.secret.endsWith('A') ? 'B' : 'A'), hashA),
        false,
      );
      // A tampered row with absurd parameters is a mismatch, not a memory bomb.
      assert.equal(await verifySecret(a.secret, hashA.replace('$16384$', '$1073741824$')), false);
    });

    it('refuses a duplicate name, unknown scopes and unknown grants', async () => {
      await assert.rejects(addClient(trt.ctx, 'all-scopes', { consumer: ['sign'] }, 't'), (e) =>
        hasCode(e, 'CLIENT_EXISTS'),
      );
      await assert.rejects(addClient(trt.ctx, 'x1', { nope: ['sign'] }, 't'), (e) =>
        hasCode(e, 'SCOPE_NOT_FOUND'),
      );
      await assert.rejects(addClient(trt.ctx, 'x2', { consumer: ['admin'] }, 't'), (e) =>
        hasCode(e, 'REQUEST_INVALID'),
      );
      await assert.rejects(addClient(trt.ctx, 'x3', {}, 't'), (e) => hasCode(e, 'REQUEST_INVALID'));
      await assert.rejects(addClient(trt.ctx, 'bad name', { consumer: ['sign'] }, 't'), (e) =>
        hasCode(e, 'REQUEST_INVALID'),
      );
    });

    it('rotate-secret replaces the secret: the old one no longer checks out', async () => {
      const c = await addClient(trt.ctx, 'rotating', { consumer: ['verify'] }, 'test');
      assert.equal((await checkClientSecret(trt.ctx, c.secret))?.id, c.client.id);
      const r = await rotateClientSecret(trt.ctx, 'rotating', 'test');
      assert.notEqual(r.secret, c.secret);
      assert.equal(await checkClientSecret(trt.ctx, c.secret), null);
      assert.equal((await checkClientSecret(trt.ctx, r.secret))?.name, 'rotating');
    });
  });

  describe('auth cache', () => {
    /** Makes the stored hash match no secret, leaving updated_at alone: only a cached answer can still accept. */
    const breakSecretHash = (id: string) =>
      trt.rt.ds.query('UPDATE clients SET secret_hash = ? WHERE id = ?', ['scrypt$broken', id]);

    it('answers from memory until a poll sees the client row change, even with updated_at untouched', async () => {
      const c = await addClient(trt.ctx, 'cached', { consumer: ['sign'] }, 'test');
      await withAuthenticator(trt.kw, async (auth) => {
        assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
        // Break the stored hash WITHOUT touching updated_at. Until the next poll only a cached
        // answer can still accept the secret: this proves no scrypt per request.
        await breakSecretHash(c.client.id);
        assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
        // The poll compares each row's content, not its timestamp: the cached answer goes.
        await auth.poll();
        await assert.rejects(auth.authenticate(`Bearer ${c.secret}`), (e) => hasCode(e, 'UNAUTHENTICATED'));
      });
    });

    it('a cached answer survives polls that see no change, even with another row unreadable', async () => {
      const c = await addClient(trt.ctx, 'steady', { consumer: ['sign'] }, 'test');
      const other = await addClient(trt.ctx, 'hand-edited', { consumer: ['sign'] }, 'test');
      try {
        await withAuthenticator(trt.kw, async (auth) => {
          // Someone edits another client's grants by hand into text that is not JSON.
          await trt.rt.ds.query('UPDATE clients SET grants = ? WHERE id = ?', [
            '{consumer: sign',
            other.client.id,
          ]);
          await auth.poll();
          assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
          await auth.poll(); // nothing changed: the answer must stay cached
          // Only the cache can accept the secret now (and the broken row must not have made the
          // poll fail: a failed poll clears the cache).
          await breakSecretHash(c.client.id);
          assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
          await assert.rejects(auth.authenticate(`Bearer ${other.secret}`));
        });
      } finally {
        await trt.rt.ds.query('DELETE FROM clients WHERE id IN (?, ?)', [c.client.id, other.client.id]);
      }
    });

    it('a secret rotated in the same millisecond as the last write is refused after the next poll', async () => {
      // Attack: the old secret, cached as good, must not outlive a rotation whose updated_at
      // equals the previous one (a clock stepped back, a CLI on a host whose clock is behind;
      // here the FakeClock simply does not move).
      const c = await addClient(trt.ctx, 'same-ms', { consumer: ['sign'] }, 'test');
      await withAuthenticator(trt.kw, async (auth) => {
        assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
        const rotated = await rotateClientSecret(trt.ctx, 'same-ms', 'test');
        assert.equal(rotated.client.updatedAt.getTime(), c.client.updatedAt.getTime(), 'same updated_at');
        await auth.poll();
        await assert.rejects(auth.authenticate(`Bearer ${c.secret}`), (e) => hasCode(e, 'UNAUTHENTICATED'));
        assert.equal((await auth.authenticate(`Bearer ${rotated.secret}`)).id, c.client.id);
      });
    });

    it('a grant taken away in the database is enforced after the next poll (the edited row is refused until sealed)', async () => {
      const c = await addClient(trt.ctx, 'narrowed', { consumer: ['sign', 'verify'] }, 'test');
      await withAuthenticator(trt.kw, async (auth) => {
        assert.deepEqual((await auth.authenticate(`Bearer ${c.secret}`)).grants, {
          consumer: ['sign', 'verify'],
        });
        await trt.rt.ds.query('UPDATE clients SET grants = ? WHERE id = ?', [
          JSON.stringify({ consumer: ['verify'] }),
          c.client.id,
        ]);
        await auth.poll();
        // An edit made outside keywarden breaks the row's seal: no HSM key vouches for it.
        await assert.rejects(auth.authenticate(`Bearer ${c.secret}`), (e) => hasCode(e, 'UNAUTHENTICATED'));
        await sealClients(trt.ctx, { clients: ['narrowed'], all: false, force: true, dryRun: false }, 'test');
        await auth.poll();
        assert.deepEqual((await auth.authenticate(`Bearer ${c.secret}`)).grants, { consumer: ['verify'] });
      });
    });

    it('a client added, used and removed between two polls is refused after the next poll', async () => {
      // The table looks the same at both polls (the client came and went in between), yet the
      // daemon cached an answer for it in between: comparing table markers alone kept it.
      await withAuthenticator(trt.kw, async (auth) => {
        const c = await addClient(trt.ctx, 'fleeting', { consumer: ['sign'] }, 'test');
        assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).id, c.client.id);
        await removeClient(trt.ctx, 'fleeting', 'test');
        await auth.poll();
        await assert.rejects(auth.authenticate(`Bearer ${c.secret}`), (e) => hasCode(e, 'UNAUTHENTICATED'));
      });
    });

    it('trusts nothing cached when polls stop succeeding', async () => {
      const c = await addClient(trt.ctx, 'stale', { consumer: ['sign'] }, 'test');
      // Never started: no successful poll, so every request goes to the store.
      const auth = new ClientAuthenticator(trt.kw, { pollSeconds: 3600 });
      assert.equal((await auth.authenticate(`Bearer ${c.secret}`)).name, 'stale');
      await breakSecretHash(c.client.id);
      await assert.rejects(auth.authenticate(`Bearer ${c.secret}`), (e) => hasCode(e, 'UNAUTHENTICATED'));
    });

    it('a removed client gets 401 from the route within the poll interval (server.keyRefreshSeconds)', async () => {
      const c = await addClient(trt.ctx, 'leaving', { consumer: ['sign'] }, 'test');
      const body = { claims: { aud: aud('consumer') } };
      assert.equal((await post('/v1/scopes/consumer/sign', body, c.secret)).status, 200);
      await removeClient(trt.ctx, 'leaving', 'test');
      const removedAt = Date.now();
      let status = 200;
      while (status === 200 && Date.now() - removedAt < 10_000) {
        status = (await post('/v1/scopes/consumer/sign', body, c.secret)).status;
        if (status === 200) await new Promise((r) => setTimeout(r, 50));
      }
      const elapsed = Date.now() - removedAt;
      assert.equal(status, 401);
      const boundMs = trt.config.server.keyRefreshSeconds * 1000;
      assert.ok(elapsed <= boundMs + 1000, `401 after ${elapsed} ms; bound ${boundMs} ms + 1 s slack`);
    });
  });

  describe('explicit typing (typ)', () => {
    it('a verifier expecting at+jwt refuses a token the same client signed as JWT (route and library)', async () => {
      const access = await post('/v1/scopes/enterprise/sign', {
        claims: { aud: aud('enterprise') },
        header: { typ: 'at+jwt' },
      });
      assert.equal(access.status, 200);
      const plain = await post('/v1/scopes/enterprise/sign', { claims: { aud: aud('enterprise') } });
      assert.equal(plain.status, 200);
      const [accessToken, plainToken] = [access.body.token as string, plain.body.token as string];
      assert.deepEqual(await bothVerdicts('enterprise', accessToken, 'at+jwt'), {
        route: 'valid',
        library: 'valid',
      });
      assert.deepEqual(await bothVerdicts('enterprise', accessToken, 'application/AT+JWT'), {
        route: 'valid',
        library: 'valid',
      });
      // Same key, same issuer, same audience, valid signature: another kind of token.
      assert.deepEqual(await bothVerdicts('enterprise', plainToken), { route: 'valid', library: 'valid' });
      assert.deepEqual(await bothVerdicts('enterprise', plainToken, 'at+jwt'), {
        route: 'typ_mismatch',
        library: 'typ_mismatch',
      });
    });

    it('the sign route signs only typ values a verifier can expect: others are 400 REQUEST_INVALID', async () => {
      for (const typ of ['a/b/c', 'application/', '/', 'at jwt', 'at+jwt;x', '\u212A+jwt']) {
        const r = await post('/v1/scopes/enterprise/sign', {
          claims: { aud: aud('enterprise') },
          header: { typ },
        });
        assert.equal(r.status, 400, typ);
        assert.equal((r.body.error as { code: string }).code, 'REQUEST_INVALID');
      }
    });

    it('a typ that is not a media type is 400 REQUEST_INVALID, not a verdict', async () => {
      const signed = await post('/v1/scopes/enterprise/sign', { claims: { aud: aud('enterprise') } });
      for (const typ of ['', 'at+jwt; charset=utf-8', 'a b', 'x'.repeat(65), 5, null]) {
        const r = await post('/v1/scopes/enterprise/verify', {
          token: signed.body.token,
          audience: aud('enterprise'),
          typ,
        });
        assert.equal(r.status, 400, JSON.stringify(typ));
        assert.equal((r.body.error as { code: string }).code, 'REQUEST_INVALID');
      }
      assert.throws(
        () => createVerifier({ issuer: issuer('enterprise'), audience: aud('enterprise'), typ: 'at jwt' }),
        TypeError,
      );
    });
  });

  describe("token lifetime: exp - iat bounded by the scope's maxTokenTtl (route and library)", () => {
    // The test policy's maxTokenTtl is 5m; both verifiers allow 30 s of clock skew.
    const MAX_TTL = 300;
    const SKEW = 30;

    it('the JWKS publishes the bound on every key as max_token_ttl, from the scope policy', async () => {
      const consumer = trt.config.scopes.find((sc) => sc.name === 'consumer')!;
      assert.equal(consumer.policy.maxTokenTtlSeconds, MAX_TTL);
      const jwks = (await (await fetch(`${base}/scopes/consumer/.well-known/jwks.json`)).json()) as {
        keys: { kid: string; max_token_ttl: unknown }[];
      };
      assert.ok(jwks.keys.length > 0);
      for (const k of jwks.keys) assert.equal(k.max_token_ttl, MAX_TTL, k.kid);
    });

    it("the scope's discovery document publishes the bound as keywarden_max_token_ttl, from the scope policy", async () => {
      // Other verifiers (jose's maxTokenAge, PyJWT) can read it there instead of copying it by hand.
      for (const scope of trt.config.scopes) {
        const doc = (await (
          await fetch(`${base}/scopes/${scope.name}/.well-known/openid-configuration`)
        ).json()) as Record<string, unknown>;
        assert.equal(doc.issuer, issuer(scope.name));
        assert.equal(doc.keywarden_max_token_ttl, scope.policy.maxTokenTtlSeconds, scope.name);
      }
      assert.equal(
        trt.config.scopes.find((sc) => sc.name === 'consumer')!.policy.maxTokenTtlSeconds,
        MAX_TTL,
      );
    });

    it("refuses a token the scope's real key signed to live past maxTokenTtl + skew; accepts one at the bound", async () => {
      const key = await signingKeyOf(trt.ctx, 'consumer');
      const iat = s(trt.clock.now());
      const living = (seconds: number) =>
        signWithKey(
          trt.ctx,
          key,
          { alg: key.alg, kid: key.kid, typ: 'JWT' },
          { iss: issuer('consumer'), aud: aud('consumer'), iat, nbf: iat, exp: iat + seconds },
        );
      // The leak this closes: a token made with the HSM key outside the signer, living until the
      // key's own expiry (exp_beyond_key_expiry does not catch it: it outlives no key).
      const untilKeyExpiry = s(key.expiresAt) - iat;
      assert.ok(untilKeyExpiry > MAX_TTL + SKEW, `the key expires in ${untilKeyExpiry} s`);
      for (const seconds of [untilKeyExpiry, MAX_TTL + SKEW + 1]) {
        assert.deepEqual(await bothVerdicts('consumer', await living(seconds)), {
          route: 'token_lifetime_exceeded',
          library: 'token_lifetime_exceeded',
        });
      }
      for (const seconds of [MAX_TTL + SKEW, MAX_TTL]) {
        assert.deepEqual(await bothVerdicts('consumer', await living(seconds)), {
          route: 'valid',
          library: 'valid',
        });
      }
      // What the signer makes for the longest ttl it is asked for stays within the bound.
      const signed = await post('/v1/scopes/consumer/sign', {
        claims: { aud: aud('consumer') },
        ttlSeconds: 400 * 86400,
      });
      assert.equal(signed.status, 200);
      assert.deepEqual(await bothVerdicts('consumer', signed.body.token as string), {
        route: 'valid',
        library: 'valid',
      });
    });

    it('the route reports the reason and the numbers in its message', async () => {
      const key = await signingKeyOf(trt.ctx, 'consumer');
      const iat = s(trt.clock.now());
      const token = await signWithKey(
        trt.ctx,
        key,
        { alg: key.alg, kid: key.kid, typ: 'JWT' },
        { iss: issuer('consumer'), aud: aud('consumer'), iat, nbf: iat, exp: iat + 600 },
      );
      assert.ok(iat + 600 < s(key.expiresAt), 'the token does not outlive its key');
      const r = await post('/v1/scopes/consumer/verify', { token, audience: aud('consumer') });
      assert.equal(r.status, 200);
      assert.equal(r.body.valid, false);
      assert.equal(r.body.reason, 'token_lifetime_exceeded');
      assert.match(r.body.message as string, /600 s.*maxTokenTtl of 300 s/);
    });
  });

  describe('key states over time (route and library)', () => {
    let key: KeyRecord;
    let t0: Date;

    before(async () => {
      key = await signingKeyOf(trt.ctx, 'consumer');
      t0 = trt.clock.now();
      assert.ok(key.activateAt <= t0);
    });

    it('a pending key cannot have signed anything', async () => {
      const pending = await rotateScope(trt.ctx, 'staging', 'test');
      assert.ok(pending.activateAt > trt.clock.now());
      const now = s(trt.clock.now());
      const token = await signWithKey(
        trt.ctx,
        pending,
        { alg: pending.alg, kid: pending.kid, typ: 'JWT' },
        { iss: issuer('staging'), aud: aud('staging'), iat: now, nbf: now, exp: now + 60 },
      );
      assert.deepEqual(await bothVerdicts('staging', token), {
        route: 'key_pending',
        library: 'key_pending',
      });
    });

    it('a revoked key verifies nothing, even tokens it signed before', async () => {
      const signed = await post('/v1/scopes/enterprise/sign', { claims: { aud: aud('enterprise') } });
      assert.equal(signed.status, 200);
      const token = signed.body.token as string;
      assert.deepEqual(await bothVerdicts('enterprise', token), { route: 'valid', library: 'valid' });
      await revokeKey(trt.ctx, signed.body.kid as string, 'test: suspected leak', 'test');
      // The route knows why; the library no longer sees the kid in the JWKS at all.
      assert.deepEqual(await bothVerdicts('enterprise', token), {
        route: 'key_revoked',
        library: 'kid_unknown',
      });
    });

    it('a retired key verifies what it signed while active, and nothing issued after it retired', async () => {
      trt.clock.set(key.retireAt.getTime() - 60_000);
      const signed = await post('/v1/scopes/consumer/sign', { claims: { aud: aud('consumer') } });
      assert.equal(signed.status, 200);
      assert.equal(signed.body.kid, key.kid);
      trt.clock.set(key.retireAt.getTime() + 1000);
      assert.deepEqual(await bothVerdicts('consumer', signed.body.token as string), {
        route: 'valid',
        library: 'valid',
      });
      // Nothing signs with it any more (no successor exists: reconcile was not run).
      const refused = await post('/v1/scopes/consumer/sign', { claims: { aud: aud('consumer') } });
      assert.equal(refused.status, 503);
      assert.equal((refused.body.error as { code: string }).code, 'NO_ACTIVE_KEY');
      // A holder of the key minting a token after retirement (beyond the 30 s skew): refused.
      trt.clock.set(key.retireAt.getTime() + 120_000);
      const now = s(trt.clock.now());
      const late = await signWithKey(
        trt.ctx,
        key,
        { alg: key.alg, kid: key.kid },
        { iss: issuer('consumer'), aud: aud('consumer'), iat: now, nbf: now, exp: now + 60 },
      );
      assert.deepEqual(await bothVerdicts('consumer', late), {
        route: 'iat_outside_key_window',
        library: 'iat_outside_key_window',
      });
    });

    it('an expired key verifies nothing, even a token whose exp is far in the future', async () => {
      const iat = s(t0);
      const forged = await signWithKey(
        trt.ctx,
        key,
        { alg: key.alg, kid: key.kid },
        { iss: issuer('consumer'), aud: aud('consumer'), iat, nbf: iat, exp: iat + 365 * 86400 },
      );
      trt.clock.set(key.expiresAt.getTime() + 1000);
      // The route still has the row and says why; the library no longer sees it published.
      assert.deepEqual(await bothVerdicts('consumer', forged), {
        route: 'key_expired',
        library: 'kid_unknown',
      });
      const jwks = (await (await fetch(`${base}/scopes/consumer/.well-known/jwks.json`)).json()) as {
        keys: { kid: string }[];
      };
      assert.ok(!jwks.keys.some((k) => k.kid === key.kid));
    });
  });

  describe('JWKS route', () => {
    it('serves each scope its own keys, 304 on a matching ETag, and 404 SCOPE_NOT_FOUND for any other name', async () => {
      const fetchJwks = (scope: string, headers: Record<string, string> = {}) =>
        fetch(`${base}/scopes/${scope}/.well-known/jwks.json`, { headers });
      // Earlier tests moved the clock past some keys' expiry: bring every scope up to date first.
      await reconcileAll(trt.ctx, 'test');
      await trt.ctx.cache.refresh(true);
      const kids = new Map<string, string[]>();
      for (const scope of SCOPES) {
        const r = await fetchJwks(scope);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('content-type'), 'application/jwk-set+json');
        assert.match(r.headers.get('cache-control') ?? '', /^public, max-age=\d+$/);
        const etag = r.headers.get('etag')!;
        const body = (await r.json()) as { keys: { kid: string; iss: string }[] };
        assert.ok(body.keys.length > 0);
        assert.ok(
          body.keys.every((k) => k.iss === issuer(scope)),
          `${scope} serves only its own keys`,
        );
        kids.set(
          scope,
          body.keys.map((k) => k.kid),
        );
        const again = await fetchJwks(scope, { 'if-none-match': etag });
        assert.equal(again.status, 304);
        assert.equal(await again.text(), '');
      }
      const all = [...kids.values()].flat();
      assert.equal(new Set(all).size, all.length, 'no kid is published by two scopes');
      for (const name of ['nope', 'CONSUMER', 'consumer-', '_audit', 'a'.repeat(150)]) {
        const r = await fetchJwks(name);
        assert.equal(r.status, 404, name);
        assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'SCOPE_NOT_FOUND', name);
      }
    });
  });
});
