/**
 * The token service end to end: a real `keywarden serve` process on a fresh SoftHSM2 token,
 * API clients made with the real CLI, tokens signed and verified over HTTP, and checked by the
 * relying-party library and by third-party JOSE libraries fetching the daemon's JWKS over HTTP.
 * Includes the Storm-0558 regression suite: every way a token from one scope (or a token no
 * key of the scope could have made) might be accepted by another is attacked on both the
 * verify route and the library.
 */
import { strict as assert } from 'node:assert';
import { createHmac, createPublicKey } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import jsonwebtoken from 'jsonwebtoken';
import { JwksClient } from 'jwks-rsa';
import nodeJose from 'node-jose';
import { addClient } from '../../src/lifecycle/clients';
import type { Runtime } from '../../src/main';
import type { KeyRecord } from '../../src/policy/key';
import { createVerifier, type ValidationResult } from '@keywarden/verify';
import { signingKeyOf, signWithKey, startDaemon, type Daemon } from '../helpers/daemon';

// consumer and enterprise share an audience on purpose: in 2023 the mail system accepted
// tokens for its audience from a consumer key. Only the scope boundary (I5) stops that here.
const SHARED_AUD = 'mail-api';
const SCOPES = [
  { name: 'consumer', audiences: ['consumer-api', SHARED_AUD] },
  { name: 'enterprise', audiences: ['enterprise-api', SHARED_AUD] },
  { name: 'es384', alg: 'ES384' },
  { name: 'rs256', alg: 'RS256' },
  { name: 'ps256', alg: 'PS256' },
  { name: 'retiring' },
];

interface Answer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

const nowS = () => Math.floor(Date.now() / 1000);
const b64 = (v: object | string) =>
  Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const errorCode = (a: Answer) => (a.body.error as { code?: string } | undefined)?.code;

describe('token service (e2e: keywarden serve + CLI)', function () {
  this.timeout(180_000);
  let daemon: Daemon;
  let rt: Runtime;
  /** Made with the real CLI: sign+verify on consumer and enterprise, sign on the alg scopes. */
  let issuerSecret: string;
  let issuerClientId: string;
  /** sign+verify on consumer only. */
  let consumerOnly: string;
  /** verify on consumer and enterprise, no sign anywhere. */
  let verifyOnly: string;

  async function call(
    path: string,
    opts: {
      bearer?: string | null;
      body?: unknown;
      raw?: string;
      contentType?: string | null;
      method?: string;
    } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = {};
    const bearer = opts.bearer === undefined ? issuerSecret : opts.bearer;
    if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
    const contentType = opts.contentType === undefined ? 'application/json' : opts.contentType;
    if (contentType !== null) headers['content-type'] = contentType;
    const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const r = await fetch(`${daemon.baseUrl}${path}`, { method: opts.method ?? 'POST', headers, body });
    const text = await r.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { text };
    }
    return { status: r.status, headers: r.headers, body: parsed };
  }

  const sign = (scope: string, body: unknown, bearer?: string | null) =>
    call(`/v1/scopes/${scope}/sign`, { body, ...(bearer !== undefined ? { bearer } : {}) });
  const verify = (scope: string, token: string, audience: string, bearer?: string | null) =>
    call(`/v1/scopes/${scope}/verify`, {
      body: { token, audience },
      ...(bearer !== undefined ? { bearer } : {}),
    });

  async function signedToken(scope: string, claims: Record<string, unknown>): Promise<string> {
    const r = await sign(scope, { claims });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.token as string;
  }

  before(async () => {
    daemon = await startDaemon({ scopes: SCOPES });
    const add = await daemon.cli([
      '--json',
      'clients',
      'add',
      'issuer-svc',
      '--grant',
      'consumer:sign,verify',
      '--grant',
      'enterprise:sign,verify',
      '--scope',
      'es384',
      '--scope',
      'rs256',
      '--scope',
      'ps256',
      '--scope',
      'retiring',
      '--grant',
      'sign,verify',
    ]);
    assert.equal(add.code, 0, add.stderr);
    const out = JSON.parse(add.stdout) as { id: string; secret: string; grants: Record<string, string[]> };
    issuerSecret = out.secret;
    issuerClientId = out.id;
    assert.deepEqual(out.grants, {
      consumer: ['sign', 'verify'],
      enterprise: ['sign', 'verify'],
      es384: ['sign', 'verify'],
      rs256: ['sign', 'verify'],
      ps256: ['sign', 'verify'],
      retiring: ['sign', 'verify'],
    });
    rt = await daemon.openRuntime();
    consumerOnly = (await addClient(rt.ctx, 'consumer-only', { consumer: ['sign', 'verify'] }, 'test'))
      .secret;
    verifyOnly = (
      await addClient(rt.ctx, 'verify-only', { consumer: ['verify'], enterprise: ['verify'] }, 'test')
    ).secret;
  });

  after(async () => {
    await rt?.close();
    await daemon?.stop();
  });

  describe('clients CLI', () => {
    it('prints the secret once: list and show print neither it nor its hash', async () => {
      assert.match(issuerSecret, new RegExp(`^kw_${issuerClientId}_[A-Za-z0-9_-]{43}$`));
      const list = await daemon.cli(['--json', 'clients', 'list']);
      assert.equal(list.code, 0, list.stderr);
      const all = JSON.parse(list.stdout) as { name: string; grants: object }[];
      assert.deepEqual(all.map((c) => c.name).sort(), ['consumer-only', 'issuer-svc', 'verify-only']);
      const show = await daemon.cli(['clients', 'show', 'issuer-svc']);
      assert.equal(show.code, 0, show.stderr);
      assert.match(show.stdout, /consumer:sign,verify/);
      for (const text of [list.stdout, show.stdout]) {
        assert.ok(!text.includes(issuerSecret.slice(-43)), 'secret printed');
        assert.ok(!text.includes('scrypt'), 'hash printed');
      }
    });

    it('refuses a duplicate name (exit 5) and an unknown scope (exit 4), creating nothing', async () => {
      const dup = await daemon.cli(['clients', 'add', 'issuer-svc', '--grant', 'consumer:sign']);
      assert.equal(dup.code, 5, dup.stderr);
      assert.match(dup.stderr, /CLIENT_EXISTS/);
      const unknown = await daemon.cli(['clients', 'add', 'ghost', '--grant', 'nope:sign']);
      assert.equal(unknown.code, 4, unknown.stderr);
      assert.match(unknown.stderr, /SCOPE_NOT_FOUND/);
      const names = (await rt.ds.query('SELECT name FROM clients')) as { name: string }[];
      assert.ok(!names.some((n) => n.name === 'ghost'));
    });
  });

  describe('authentication and grants', () => {
    const claims = { aud: 'consumer-api' };

    it('no token: 401 with a Bearer challenge, on sign and verify', async () => {
      for (const r of [
        await sign('consumer', { claims }, null),
        await verify('consumer', 'x.y.z', 'a', null),
      ]) {
        assert.equal(r.status, 401);
        assert.equal(errorCode(r), 'UNAUTHENTICATED');
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer realm="keywarden"/);
      }
    });

    it('wrong secret: 401, whether the client id is real or the text is not a secret at all', async () => {
      const wrongSecret = `kw_${issuerClientId}_${'A'.repeat(43)}`;
      const unknownClient = `kw_00000000-0000-4000-8000-000000000000_${issuerSecret.slice(-43)}`;
      for (const bearer of [wrongSecret, unknownClient, 'garbage', issuerSecret.slice(0, -1)]) {
        const r = await sign('consumer', { claims }, bearer);
        assert.equal(r.status, 401, bearer);
        assert.equal(errorCode(r), 'UNAUTHENTICATED');
        assert.match(r.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      }
      const basic = await fetch(`${daemon.baseUrl}/v1/scopes/consumer/sign`, {
        method: 'POST',
        headers: { authorization: `Basic ${b64(`x:${issuerSecret}`)}`, 'content-type': 'application/json' },
        body: JSON.stringify({ claims }),
      });
      assert.equal(basic.status, 401);
    });

    it('right secret, wrong scope: 403', async () => {
      const r = await sign('enterprise', { claims: { aud: 'enterprise-api' } }, consumerOnly);
      assert.equal(r.status, 403);
      assert.equal(errorCode(r), 'FORBIDDEN');
      assert.equal((await sign('consumer', { claims }, consumerOnly)).status, 200);
    });

    it('a verify-only grant cannot sign (403) but can verify', async () => {
      const signRefused = await sign('consumer', { claims }, verifyOnly);
      assert.equal(signRefused.status, 403);
      assert.equal(errorCode(signRefused), 'FORBIDDEN');
      const token = await signedToken('consumer', claims);
      const v = await verify('consumer', token, 'consumer-api', verifyOnly);
      assert.equal(v.status, 200);
      assert.equal(v.body.valid, true);
    });

    it('an unknown scope is 404 for an authenticated client', async () => {
      const r = await sign('no-such-scope', { claims }, issuerSecret);
      assert.equal(r.status, 404);
      assert.equal(errorCode(r), 'SCOPE_NOT_FOUND');
    });

    it('a removed client gets 401 within server.keyRefreshSeconds', async () => {
      const leaving = (await addClient(rt.ctx, 'leaving', { consumer: ['sign'] }, 'test')).secret;
      assert.equal((await sign('consumer', { claims }, leaving)).status, 200);
      const removed = await daemon.cli(['clients', 'remove', 'leaving']);
      assert.equal(removed.code, 0, removed.stderr);
      const t = Date.now();
      let status = 200;
      while (status === 200 && Date.now() - t < 10_000)
        status = (await sign('consumer', { claims }, leaving)).status;
      const elapsed = Date.now() - t;
      assert.equal(status, 401);
      const boundMs = daemon.config.server.keyRefreshSeconds * 1000;
      assert.ok(elapsed <= boundMs + 1500, `401 only after ${elapsed} ms (bound ${boundMs} ms + slack)`);
    });

    it('rotate-secret: the old secret stops working within the same bound, the new one works', async () => {
      const old = (await addClient(rt.ctx, 'rotator', { consumer: ['sign'] }, 'test')).secret;
      assert.equal((await sign('consumer', { claims }, old)).status, 200);
      const rotated = await daemon.cli(['--json', 'clients', 'rotate-secret', 'rotator']);
      assert.equal(rotated.code, 0, rotated.stderr);
      const fresh = (JSON.parse(rotated.stdout) as { secret: string }).secret;
      assert.notEqual(fresh, old);
      const t = Date.now();
      let status = 200;
      while (status === 200 && Date.now() - t < 10_000)
        status = (await sign('consumer', { claims }, old)).status;
      assert.equal(status, 401);
      assert.ok(Date.now() - t <= daemon.config.server.keyRefreshSeconds * 1000 + 1500);
      assert.equal((await sign('consumer', { claims }, fresh)).status, 200);
    });
  });

  describe('POST /v1/scopes/:scope/sign', () => {
    it('returns {token, kid, expiresAt}: iss forced, iat/nbf/jti set by the server, exp capped', async () => {
      const before = nowS();
      const r = await sign('consumer', {
        claims: { aud: SHARED_AUD, sub: 'alice', roles: ['a'] },
        ttlSeconds: 999_999,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.headers.get('cache-control'), 'no-store');
      assert.deepEqual(Object.keys(r.body).sort(), ['expiresAt', 'kid', 'token']);
      const token = r.body.token as string;
      const [h, p] = token
        .split('.')
        .slice(0, 2)
        .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString()));
      assert.deepEqual(h, { alg: 'ES256', kid: r.body.kid, typ: 'JWT' });
      assert.equal(p.iss, daemon.issuer('consumer'));
      assert.equal(p.aud, SHARED_AUD);
      assert.equal(p.sub, 'alice');
      assert.ok(p.iat >= before && p.iat <= nowS() + 1);
      assert.equal(p.nbf, p.iat);
      // maxTokenTtl of the test policy is 5m: the requested 999999 s is capped.
      assert.equal(p.exp - p.iat, 300);
      assert.equal(r.body.expiresAt, new Date(p.exp * 1000).toISOString());
      assert.match(p.jti, /^[0-9a-f-]{36}$/);
      const jwks = (await (await fetch(daemon.jwksUrl('consumer'))).json()) as { keys: { kid: string }[] };
      assert.ok(jwks.keys.some((k) => k.kid === r.body.kid));
    });

    it('honours a shorter ttlSeconds and a typ header', async () => {
      const r = await sign('consumer', {
        claims: { aud: 'consumer-api' },
        ttlSeconds: 60,
        header: { typ: 'at+jwt' },
      });
      assert.equal(r.status, 200);
      const token = r.body.token as string;
      const p = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
      assert.equal(p.exp - p.iat, 60);
      assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
    });

    it("accepts iss equal to the scope's issuer and refuses any other (400 CLAIMS_INVALID)", async () => {
      assert.equal(
        (await sign('consumer', { claims: { aud: SHARED_AUD, iss: daemon.issuer('consumer') } })).status,
        200,
      );
      const r = await sign('consumer', { claims: { aud: SHARED_AUD, iss: daemon.issuer('enterprise') } });
      assert.equal(r.status, 400);
      assert.equal(errorCode(r), 'CLAIMS_INVALID');
    });

    it('refuses bad claims: foreign or missing aud, server-set claims, too deep, too big', async () => {
      let deep: Record<string, unknown> = { leaf: true };
      for (let i = 0; i < 10; i++) deep = { d: deep };
      const bad: Record<string, unknown>[] = [
        { sub: 'no-aud' },
        { aud: 'enterprise-api' },
        { aud: ['consumer-api', 'enterprise-api'] },
        { aud: 'consumer-api', exp: nowS() + 10 },
        { aud: 'consumer-api', iat: nowS() },
        { aud: 'consumer-api', nbf: nowS() },
        { aud: 'consumer-api', jti: 'mine' },
        { aud: 'consumer-api', deep },
        { aud: 'consumer-api', blob: 'x'.repeat(9000) },
      ];
      for (const claims of bad) {
        const r = await sign('consumer', { claims });
        assert.equal(r.status, 400, JSON.stringify(claims).slice(0, 80));
        assert.equal(errorCode(r), 'CLAIMS_INVALID', JSON.stringify(r.body));
      }
    });

    it('refuses malformed requests: unknown members, wrong types, non-JSON, other content types, oversized bodies', async () => {
      const claims = { aud: 'consumer-api' };
      const cases: { opts: Parameters<typeof call>[1]; status: number }[] = [
        { opts: { body: { claims, extra: 1 } }, status: 400 },
        { opts: { body: { claims, header: { alg: 'none' } } }, status: 400 },
        { opts: { body: { claims, header: { typ: 'JWT', kid: 'mine' } } }, status: 400 },
        { opts: { body: { claims, ttlSeconds: '60' } }, status: 400 },
        { opts: { body: { claims, ttlSeconds: 0 } }, status: 400 },
        { opts: { body: { claims, ttlSeconds: 1.5 } }, status: 400 },
        { opts: { body: { claims: [claims] } }, status: 400 },
        { opts: { body: { claims: 'aud=consumer-api' } }, status: 400 },
        { opts: { body: {} }, status: 400 },
        { opts: { raw: '{"claims": {"aud": "consumer-api"}' }, status: 400 },
        { opts: { raw: '{"claims":{"aud":"consumer-api","__proto__":{"x":1}}}' }, status: 400 },
        { opts: { raw: JSON.stringify({ claims }), contentType: 'text/plain' }, status: 415 },
        {
          opts: { raw: JSON.stringify({ claims }), contentType: 'application/x-www-form-urlencoded' },
          status: 415,
        },
        { opts: { raw: JSON.stringify({ claims }), contentType: null }, status: 415 },
        { opts: { body: { claims, pad: 'x'.repeat(70_000) } }, status: 413 },
      ];
      for (const c of cases) {
        const r = await call('/v1/scopes/consumer/sign', c.opts);
        assert.equal(
          r.status,
          c.status,
          `${JSON.stringify(c.opts).slice(0, 100)} -> ${JSON.stringify(r.body)}`,
        );
        assert.equal(errorCode(r), 'REQUEST_INVALID');
      }
      assert.equal((await call('/v1/scopes/consumer/sign', { method: 'GET', body: undefined })).status, 404);
    });
  });

  describe('POST /v1/scopes/:scope/verify', () => {
    it('answers 200 {valid: true, claims} or 200 {valid: false, reason}', async () => {
      const token = await signedToken('consumer', { aud: 'consumer-api', sub: 'bob' });
      const ok = await verify('consumer', token, 'consumer-api');
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('cache-control'), 'no-store');
      assert.equal(ok.body.valid, true);
      assert.equal((ok.body.claims as { sub: string }).sub, 'bob');
      const bad = await verify('consumer', token, 'someone-else');
      assert.equal(bad.status, 200);
      assert.deepEqual([bad.body.valid, bad.body.reason], [false, 'audience_mismatch']);
    });

    it('refuses malformed requests with 400', async () => {
      for (const body of [
        { token: 'a.b.c' },
        { audience: 'x' },
        { token: 1, audience: 'x' },
        { token: 'a', audience: '' },
      ]) {
        const r = await call('/v1/scopes/consumer/verify', { body });
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(errorCode(r), 'REQUEST_INVALID');
      }
      const extra = await call('/v1/scopes/consumer/verify', {
        body: { token: 'a', audience: 'x', alg: 'none' },
      });
      assert.equal(extra.status, 400);
    });
  });

  describe('Storm-0558 regression suite (verify route and relying-party library)', () => {
    let consumerKey: KeyRecord;
    let enterpriseKey: KeyRecord;
    const libraries = new Map<string, ReturnType<typeof createVerifier>>();

    /** The library as a relying party would set it up: issuer + audience, JWKS discovered. */
    function library(scope: string, audience: string) {
      const k = `${scope}|${audience}`;
      let v = libraries.get(k);
      if (!v) libraries.set(k, (v = createVerifier({ issuer: daemon.issuer(scope), audience })));
      return v;
    }

    /** Asserts the route and the library both refuse `token` for `scope`, with these reasons. */
    async function refusedBoth(
      scope: string,
      audience: string,
      token: string,
      routeReason: string,
      libraryReason = routeReason,
    ): Promise<void> {
      const r = await verify(scope, token, audience);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.valid, false, `route accepted: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.reason, routeReason, `route: ${r.body.message}`);
      const lib: ValidationResult = await library(scope, audience).verify(token);
      assert.equal(lib.valid, false, 'library accepted');
      if (!lib.valid) assert.equal(lib.reason, libraryReason, `library: ${lib.message}`);
    }

    /** A well-formed enterprise payload; fields can be overridden or removed (undefined). */
    const enterprisePayload = (over: Record<string, unknown> = {}) => {
      const n = nowS();
      const p: Record<string, unknown> = {
        iss: daemon.issuer('enterprise'),
        aud: SHARED_AUD,
        sub: 'ceo@enterprise',
        iat: n,
        nbf: n,
        exp: n + 120,
        ...over,
      };
      for (const [k, v] of Object.entries(p)) if (v === undefined) delete p[k];
      return p;
    };
    const eHeader = (over: Record<string, unknown> = {}) => ({
      alg: enterpriseKey.alg,
      kid: enterpriseKey.kid,
      ...over,
    });
    const forgeE = (header: object | string, payload: object | string) =>
      signWithKey(rt.ctx, enterpriseKey, header, payload);

    before(async () => {
      consumerKey = await signingKeyOf(rt.ctx, 'consumer');
      enterpriseKey = await signingKeyOf(rt.ctx, 'enterprise');
      assert.notEqual(consumerKey.kid, enterpriseKey.kid);
    });

    it('control: a genuine enterprise token passes both', async () => {
      const token = await signedToken('enterprise', { aud: SHARED_AUD });
      assert.equal((await verify('enterprise', token, SHARED_AUD)).body.valid, true);
      assert.equal((await library('enterprise', SHARED_AUD).verify(token)).valid, true);
      assert.equal((await forgeE(eHeader(), enterprisePayload())).split('.').length, 3);
      assert.equal(
        (await verify('enterprise', await forgeE(eHeader(), enterprisePayload()), SHARED_AUD)).body.valid,
        true,
      );
    });

    it("consumer's real token, presented to enterprise with its kid unchanged", async () => {
      const token = await signedToken('consumer', { aud: SHARED_AUD, sub: 'ceo@enterprise' });
      await refusedBoth('enterprise', SHARED_AUD, token, 'kid_unknown');
    });

    it("consumer's key signing enterprise's iss (kid unchanged): refused by enterprise and by consumer", async () => {
      const forged = await signWithKey(
        rt.ctx,
        consumerKey,
        { alg: consumerKey.alg, kid: consumerKey.kid, typ: 'JWT' },
        enterprisePayload(),
      );
      await refusedBoth('enterprise', SHARED_AUD, forged, 'kid_unknown');
      await refusedBoth('consumer', SHARED_AUD, forged, 'issuer_mismatch');
    });

    it("consumer's key with enterprise's kid (header relabelled, or signed that way): signature_invalid", async () => {
      const forged = await signWithKey(rt.ctx, consumerKey, eHeader({ typ: 'JWT' }), enterprisePayload());
      await refusedBoth('enterprise', SHARED_AUD, forged, 'signature_invalid');
      const real = await signedToken('consumer', { aud: SHARED_AUD });
      const [, payload, sig] = real.split('.');
      const relabelled = `${b64(eHeader({ typ: 'JWT' }))}.${payload}.${sig}`;
      await refusedBoth('enterprise', SHARED_AUD, relabelled, 'signature_invalid');
    });

    it('iat outside the key window (a token backdated before the key was active)', async () => {
      const iat = Math.floor(enterpriseKey.activateAt.getTime() / 1000) - 3600;
      await refusedBoth(
        'enterprise',
        SHARED_AUD,
        await forgeE(eHeader(), enterprisePayload({ iat, nbf: iat })),
        'iat_outside_key_window',
      );
    });

    it('alg none, HS256 keyed with the public key, and alg mismatches', async () => {
      const payload = b64(enterprisePayload());
      await refusedBoth(
        'enterprise',
        SHARED_AUD,
        `${b64({ alg: 'none', kid: enterpriseKey.kid })}.${payload}.`,
        'alg_forbidden',
      );
      const jwks = await (await fetch(daemon.jwksUrl('enterprise'))).text();
      const jwk = (JSON.parse(jwks) as { keys: Record<string, unknown>[] }).keys.find(
        (k) => k.kid === enterpriseKey.kid,
      )!;
      const pem = createPublicKey({ key: jwk as never, format: 'jwk' }).export({
        type: 'spki',
        format: 'pem',
      });
      for (const secret of [pem, JSON.stringify(jwk), jwks]) {
        const input = `${b64({ alg: 'HS256', kid: enterpriseKey.kid, typ: 'JWT' })}.${payload}`;
        const hs = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
        await refusedBoth('enterprise', SHARED_AUD, hs, 'alg_forbidden');
      }
      for (const alg of ['ES384', 'RS256', 'PS256', 'EdDSA']) {
        await refusedBoth(
          'enterprise',
          SHARED_AUD,
          await forgeE(eHeader({ alg }), enterprisePayload()),
          'alg_mismatch',
        );
      }
    });

    it('unknown crit and embedded key material or key locations in the header', async () => {
      const p = enterprisePayload();
      await refusedBoth(
        'enterprise',
        SHARED_AUD,
        await forgeE(eHeader({ crit: ['x-kw'], 'x-kw': 1 }), p),
        'crit_unsupported',
      );
      const jwk = { kty: 'EC', crv: 'P-256', x: enterpriseKey.publicJwk!.x, y: enterpriseKey.publicJwk!.y };
      for (const extra of [
        { jwk },
        { jku: `${daemon.baseUrl}/scopes/consumer/.well-known/jwks.json` },
        { x5u: 'https://attacker.example/cert.pem' },
      ]) {
        await refusedBoth('enterprise', SHARED_AUD, await forgeE(eHeader(extra), p), 'header_forbidden');
      }
    });

    it('missing kid and duplicate kid', async () => {
      const p = enterprisePayload();
      await refusedBoth('enterprise', SHARED_AUD, await forgeE({ alg: enterpriseKey.alg }, p), 'kid_missing');
      const dup = `{"alg":"${enterpriseKey.alg}","kid":"${consumerKey.kid}","kid":"${enterpriseKey.kid}"}`;
      await refusedBoth('enterprise', SHARED_AUD, await forgeE(dup, p), 'duplicate_member');
    });

    it('missing aud, wrong aud, missing exp, expired, nbf in the future', async () => {
      const n = nowS();
      const cases: [Record<string, unknown>, string][] = [
        [{ aud: undefined }, 'audience_missing'],
        [{ aud: 'enterprise-api' }, 'audience_mismatch'],
        [{ exp: undefined }, 'exp_missing'],
        [{ iat: n - 200, nbf: n - 200, exp: n - 100 }, 'token_expired'],
        [{ nbf: n + 600 }, 'token_not_yet_valid'],
      ];
      for (const [over, reason] of cases) {
        await refusedBoth('enterprise', SHARED_AUD, await forgeE(eHeader(), enterprisePayload(over)), reason);
      }
    });

    it('malformed, oversized, invalid base64url and non-JSON headers', async () => {
      const good = await forgeE(eHeader(), enterprisePayload());
      const [h, p, sig] = good.split('.') as [string, string, string];
      const cases: [string, string][] = [
        ['not-a-jwt', 'token_malformed'],
        [`${h}.${p}`, 'token_malformed'],
        [`${h}.${p}.${sig}.extra`, 'token_malformed'],
        [`${h}.${p}.${sig}${'A'.repeat(9000)}`, 'token_too_large'],
        [`${h}=.${p}.${sig}`, 'token_malformed'],
        [`${h.slice(0, -2)}+/.${p}.${sig}`, 'token_malformed'],
        [`${b64('not json')}.${p}.${sig}`, 'token_malformed'],
        [`${b64('[1,2]')}.${p}.${sig}`, 'token_malformed'],
        [`${h}.${b64('{"aud":')}.${sig}`, 'token_malformed'],
      ];
      for (const [token, reason] of cases) await refusedBoth('enterprise', SHARED_AUD, token, reason);
    });

    it("a pending key's kid and a revoked key", async () => {
      const revoked = await signingKeyOf(rt.ctx, 'retiring');
      const token = await signedToken('retiring', { aud: 'retiring-api' });
      assert.equal(decodeProtectedHeader(token).kid, revoked.kid);
      // Through the daemon, as an operator would: SoftHSM2 2.6 can crash a process that reads
      // an object's attributes while another process destroys it (docs/hsm-vendors.md), so the
      // daemon that owns the token does the destroying.
      const revoke = await daemon.cli([
        'keys',
        'revoke',
        '--reason',
        'test: Storm regression',
        '--',
        revoked.kid!,
      ]);
      assert.equal(revoke.code, 0, revoke.stderr);
      const rotated = await daemon.cli(['--json', 'keys', 'rotate', '--scope', 'retiring']);
      assert.equal(rotated.code, 0, rotated.stderr);
      const pendingKid = (JSON.parse(rotated.stdout) as { kid: string }).kid;
      const pending = (await rt.ctx.keys.listByScope('retiring')).find((k) => k.kid === pendingKid)!;
      assert.ok(pending.activateAt.getTime() > Date.now());
      // The daemon reloads keys every keyRefreshSeconds: wait until it knows both the
      // revocation and the pending key (a reload between the two would see only the first).
      const t = Date.now();
      while (Date.now() - t < 10_000) {
        const reason = (await verify('retiring', token, 'retiring-api')).body.reason;
        const jwks = (await (await fetch(daemon.jwksUrl('retiring'))).json()) as { keys: { kid: string }[] };
        if (reason === 'key_revoked' && jwks.keys.some((k) => k.kid === pending.kid)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      // The route knows the key was revoked; the library no longer finds it in the JWKS.
      await refusedBoth('retiring', 'retiring-api', token, 'key_revoked', 'kid_unknown');
      const n = nowS();
      const early = await signWithKey(
        rt.ctx,
        pending,
        { alg: pending.alg, kid: pending.kid },
        { iss: daemon.issuer('retiring'), aud: 'retiring-api', iat: n, nbf: n, exp: n + 60 },
      );
      await refusedBoth('retiring', 'retiring-api', early, 'key_pending');
    });
  });

  describe('interoperability: tokens from the sign route verify in other JOSE libraries', () => {
    for (const [scope, alg] of [
      ['consumer', 'ES256'],
      ['es384', 'ES384'],
      ['rs256', 'RS256'],
      ['ps256', 'PS256'],
    ] as const) {
      it(`${alg} (scope ${scope}): keywarden library, jose, node-jose, jsonwebtoken + jwks-rsa`, async () => {
        const aud = `${scope}-api`;
        const token = await signedToken(scope, { aud, sub: 'interop' });
        const issuer = daemon.issuer(scope);
        assert.equal(decodeProtectedHeader(token).alg, alg);

        const ours = await createVerifier({ issuer, audience: aud }).verify(token);
        assert.equal(ours.valid, true, ours.valid ? '' : ours.message);

        const joseResult = await jwtVerify(token, createRemoteJWKSet(new URL(daemon.jwksUrl(scope))), {
          issuer,
          audience: aud,
          algorithms: [alg],
        });
        assert.equal(joseResult.payload.sub, 'interop');

        const jwks = await (await fetch(daemon.jwksUrl(scope))).json();
        const keystore = await nodeJose.JWK.asKeyStore(jwks as object);
        const nj = await nodeJose.JWS.createVerify(keystore, { algorithms: [alg] }).verify(token);
        assert.equal(JSON.parse(nj.payload.toString()).sub, 'interop');

        const kid = decodeProtectedHeader(token).kid!;
        const signingKey = await new JwksClient({ jwksUri: daemon.jwksUrl(scope) }).getSigningKey(kid);
        const decoded = jsonwebtoken.verify(token, signingKey.getPublicKey(), {
          algorithms: [alg],
          issuer,
          audience: aud,
        }) as { sub: string };
        assert.equal(decoded.sub, 'interop');
      });
    }

    it('a JWT from `keywarden sign` (CLI) verifies with jose createRemoteJWKSet against the running daemon', async () => {
      const r = await daemon.cli([
        'sign',
        '--scope',
        'consumer',
        '--claims',
        '{"aud":"consumer-api","sub":"cli"}',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const { payload } = await jwtVerify(
        r.stdout.trim(),
        createRemoteJWKSet(new URL(daemon.jwksUrl('consumer'))),
        {
          issuer: daemon.issuer('consumer'),
          audience: 'consumer-api',
        },
      );
      assert.equal(payload.sub, 'cli');
    });
  });

  describe('GET /metrics', () => {
    const value = (text: string, series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line ? Number(line.slice(series.length + 1)) : 0;
    };

    it('counts signs by scope and result, sign latency, verify failures by reason, plus process metrics', async () => {
      const scrape = async () => {
        const r = await fetch(`${daemon.baseUrl}/metrics`);
        assert.equal(r.status, 200);
        assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
        return r.text();
      };
      const before = await scrape();
      for (let i = 0; i < 3; i++) await signedToken('consumer', { aud: 'consumer-api' });
      await sign('enterprise', { claims: { aud: 'enterprise-api' } }, consumerOnly);
      await sign('consumer', { claims: { aud: 'nobody' } });
      await verify('consumer', 'garbage', 'consumer-api');
      await verify('consumer', 'garbage', 'consumer-api');
      const after = await scrape();
      const delta = (series: string) => value(after, series) - value(before, series);
      assert.equal(delta('keywarden_sign_requests_total{scope="consumer",result="ok"}'), 3);
      assert.equal(delta('keywarden_sign_requests_total{scope="enterprise",result="forbidden"}'), 1);
      assert.equal(delta('keywarden_sign_requests_total{scope="consumer",result="claims_invalid"}'), 1);
      assert.equal(delta('keywarden_sign_duration_seconds_count{scope="consumer"}'), 4);
      assert.equal(delta('keywarden_verify_failures_total{scope="consumer",reason="token_malformed"}'), 2);
      assert.equal(delta('keywarden_verify_requests_total{scope="consumer",result="invalid"}'), 2);
      assert.match(after, /^process_cpu_user_seconds_total /m);
      assert.match(after, /^nodejs_eventloop_lag_seconds /m);
    });
  });
});
