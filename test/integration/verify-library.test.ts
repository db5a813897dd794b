/**
 * The relying-party library against a real HTTP server on loopback that serves a discovery
 * document and a JWKS per scope, the way keywarden publishes them. The server counts every
 * request, so caching and the refetch budget are measured, not assumed.
 */
import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeClock } from '../../src/policy/clock';
import { createVerifier, toPublishedJwk, type PublishedJwk, type VerifierOptions } from '@keywarden/verify';
import { AUDIENCE, NOW, forge, claims, makeKey, publishable, type TestKey } from '../unit/verify/fixtures';

interface ScopeState {
  issuer: string;
  keys: PublishedJwk[];
  cacheControl: string;
  /** When set, the JWKS route answers with this status and no keys. */
  failWith: number | null;
  /** Overrides the issuer in the discovery document. */
  discoveryIssuer: string | null;
  discoveryHits: number;
  jwksHits: number;
  notModified: number;
}

class KeyServer {
  private server: Server | null = null;
  readonly scopes = new Map<string, ScopeState>();
  base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  addScope(name: string): ScopeState {
    const scope: ScopeState = {
      issuer: `${this.base}/scopes/${name}`,
      keys: [],
      cacheControl: 'public, max-age=300',
      failWith: null,
      discoveryIssuer: null,
      discoveryHits: 0,
      jwksHits: 0,
      notModified: 0,
    };
    this.scopes.set(name, scope);
    return scope;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const m = /^\/scopes\/([a-z0-9-]+)\/\.well-known\/(openid-configuration|jwks\.json)$/.exec(req.url ?? '');
    const scope = m ? this.scopes.get(m[1]!) : undefined;
    if (!m || !scope || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"NOT_FOUND"}}');
      return;
    }
    if (m[2] === 'openid-configuration') {
      scope.discoveryHits++;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' }).end(
        JSON.stringify({
          issuer: scope.discoveryIssuer ?? scope.issuer,
          jwks_uri: `${scope.issuer}/.well-known/jwks.json`,
          id_token_signing_alg_values_supported: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
        }),
      );
      return;
    }
    scope.jwksHits++;
    if (scope.failWith !== null) {
      res
        .writeHead(scope.failWith, { 'content-type': 'application/json' })
        .end('{"error":{"code":"INTERNAL"}}');
      return;
    }
    const body = JSON.stringify({ keys: scope.keys });
    const etag = `"${createHash('sha256').update(body).digest('base64url')}"`;
    if (req.headers['if-none-match'] === etag) {
      scope.notModified++;
      res.writeHead(304, { etag, 'cache-control': scope.cacheControl }).end();
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/jwk-set+json',
      'cache-control': scope.cacheControl,
      etag,
    });
    res.end(body);
  }
}

function publish(scope: ScopeState, key: TestKey, issuer = scope.issuer): void {
  scope.keys.push(toPublishedJwk(publishable(key), issuer));
}

/** A token the scope would sign with `key` at the clock's now. */
function tokenAt(clock: FakeClock, scope: ScopeState, key: TestKey, kid = key.kid): string {
  const now = Math.floor(clock.now().getTime() / 1000);
  return forge(
    { alg: key.alg, kid, typ: 'JWT' },
    claims({ iss: scope.issuer, iat: now - 5, nbf: now - 5, exp: now + 300 }),
    key.privateKey,
  );
}

describe('verify library against a JWKS server on loopback', function () {
  this.timeout(30_000);
  const server = new KeyServer();
  let clock: FakeClock;
  let scope: ScopeState;
  let key: TestKey;
  let n = 0;

  before(() => server.start());
  after(() => server.stop());

  beforeEach(() => {
    clock = new FakeClock(NOW);
    scope = server.addScope(`scope-${++n}`);
    key = makeKey('ES256');
    publish(scope, key);
  });

  function verifier(extra: Partial<VerifierOptions> = {}) {
    return createVerifier({ issuer: scope.issuer, audience: AUDIENCE, clock, ...extra });
  }

  async function expectValid(v: ReturnType<typeof createVerifier>, token: string): Promise<void> {
    const r = await v.verify(token);
    assert.equal(r.valid, true, r.valid ? '' : `${r.reason}: ${r.message}`);
  }

  async function expectReason(
    v: ReturnType<typeof createVerifier>,
    token: string,
    reason: string,
  ): Promise<void> {
    const r = await v.verify(token);
    assert.equal(r.valid ? 'valid' : r.reason, reason, r.valid ? '' : r.message);
  }

  it('discovers the JWKS from the issuer and caches it across tokens', async () => {
    const v = verifier();
    for (let i = 0; i < 50; i++) await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.discoveryHits, 1);
    assert.equal(scope.jwksHits, 1);
  });

  it('concurrent callers share one in-flight fetch', async () => {
    const v = verifier();
    const results = await Promise.all(Array.from({ length: 50 }, () => v.verify(tokenAt(clock, scope, key))));
    assert.ok(results.every((r) => r.valid));
    assert.equal(scope.discoveryHits, 1);
    assert.equal(scope.jwksHits, 1);
  });

  it('honours Cache-Control max-age on the injected clock, revalidating with the ETag', async () => {
    scope.cacheControl = 'max-age=120';
    const v = verifier();
    await expectValid(v, tokenAt(clock, scope, key));
    clock.advanceSeconds(119);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 1);
    clock.advanceSeconds(2);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 2);
    assert.equal(scope.notModified, 1, 'the unchanged JWKS was revalidated with If-None-Match');
    // The 304 renewed the lifetime.
    clock.advanceSeconds(119);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 2);
  });

  it('bounds max-age by maxCacheSeconds, and uses a short default for no-store', async () => {
    scope.cacheControl = 'max-age=86400';
    const v = verifier({ maxCacheSeconds: 300 });
    await expectValid(v, tokenAt(clock, scope, key));
    clock.advanceSeconds(301);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 2);

    scope.cacheControl = 'no-store';
    clock.advanceSeconds(301);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 3);
    clock.advanceSeconds(59);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 3);
    clock.advanceSeconds(2);
    await expectValid(v, tokenAt(clock, scope, key));
    assert.equal(scope.jwksHits, 4);
  });

  it('a flood of 1,000 random kids causes no more fetches than the refetch budget', async () => {
    const v = verifier({ refetchBudget: { perMinute: 6 } });
    await expectValid(v, tokenAt(clock, scope, key));
    const before = scope.jwksHits;
    const flood = () =>
      Array.from({ length: 1000 }, () => tokenAt(clock, scope, key, randomBytes(32).toString('base64url')));

    // Sequential and concurrent: neither may exceed the budget.
    for (const token of flood().slice(0, 500)) await expectReason(v, token, 'kid_unknown');
    const concurrent = await Promise.all(
      flood()
        .slice(0, 500)
        .map((t) => v.verify(t)),
    );
    assert.ok(concurrent.every((r) => !r.valid && r.reason === 'kid_unknown'));
    const used = scope.jwksHits - before;
    assert.ok(used <= 6, `${used} fetches for 1,000 random kids; the budget is 6`);
    assert.ok(used >= 1, 'an unknown kid does get a refetch while budget remains');

    // The budget refills with time, and is again the cap.
    clock.advanceSeconds(60);
    const mid = scope.jwksHits;
    await Promise.all(flood().map((t) => v.verify(t)));
    assert.ok(scope.jwksHits - mid <= 6, `${scope.jwksHits - mid} fetches after refill`);
    // Legitimate tokens kept working throughout.
    await expectValid(v, tokenAt(clock, scope, key));
  });

  it('refetches at most once per unknown kid, however often it is presented', async () => {
    const v = verifier({ refetchBudget: { perMinute: 1000 } });
    await expectValid(v, tokenAt(clock, scope, key));
    const stranger = makeKey('ES256', {}, 7);
    for (let i = 0; i < 20; i++) await expectReason(v, tokenAt(clock, scope, stranger), 'kid_unknown');
    assert.equal(scope.jwksHits, 2);
  });

  it('picks up a rotated-in key, published after the cache was filled, on its first token', async () => {
    scope.cacheControl = 'max-age=600';
    const v = verifier();
    await expectValid(v, tokenAt(clock, scope, key));
    const next = makeKey('ES256', {}, 8);
    publish(scope, next);
    await expectValid(v, tokenAt(clock, scope, next));
    assert.equal(scope.jwksHits, 2);
    // Both keys now verify from the cache.
    await expectValid(v, tokenAt(clock, scope, key));
    await expectValid(v, tokenAt(clock, scope, next));
    assert.equal(scope.jwksHits, 2);
  });

  it("never uses a JWK whose iss is another scope, even in this scope's JWKS", async () => {
    const intruder = makeKey('ES256', {}, 9);
    publish(scope, intruder, `${server.base}/scopes/someone-else`);
    const v = verifier({ refetchBudget: { perMinute: 1000 } });
    for (let i = 0; i < 5; i++) await expectReason(v, tokenAt(clock, scope, intruder), 'kid_unknown');
    await expectValid(v, tokenAt(clock, scope, key));
    assert.ok(scope.jwksHits <= 2);
  });

  it("keeps scopes apart: a token from scope A is refused by scope B's verifier", async () => {
    const scopeB = server.addScope(`scope-b-${n}`);
    const keyB = makeKey('ES256', {}, 10);
    publish(scopeB, keyB);
    const vB = createVerifier({ issuer: scopeB.issuer, audience: AUDIENCE, clock });
    await expectValid(vB, tokenAt(clock, scopeB, keyB));
    const fromA = tokenAt(clock, scope, key);
    await expectReason(vB, fromA, 'kid_unknown');
    const fromAClaimingB = forge(
      { alg: 'ES256', kid: key.kid },
      claims({ iss: scopeB.issuer }),
      key.privateKey,
    );
    await expectReason(vB, fromAClaimingB, 'kid_unknown');
  });

  it('stops accepting a key once it leaves the JWKS (revoked) and the cache lifetime ends', async () => {
    scope.cacheControl = 'max-age=60';
    const v = verifier();
    await expectValid(v, tokenAt(clock, scope, key));
    scope.keys = [];
    clock.advanceSeconds(61);
    await expectReason(v, tokenAt(clock, scope, key), 'kid_unknown');
  });

  it('applies key lifecycle times from the JWK: an expired key refuses tokens', async () => {
    const v = verifier({ maxCacheSeconds: 10_000 });
    scope.cacheControl = 'max-age=10000';
    await expectValid(v, tokenAt(clock, scope, key));
    clock.set(key.vk.expiresAt.getTime() + 1000);
    await expectReason(v, tokenAt(clock, scope, key), 'key_expired');
  });

  it('surfaces fetch failures as jwks_unavailable and recovers after them', async () => {
    scope.failWith = 500;
    const v = verifier();
    await expectReason(v, tokenAt(clock, scope, key), 'jwks_unavailable');
    // Failures are not retried on every token: the failure is remembered briefly.
    await expectReason(v, tokenAt(clock, scope, key), 'jwks_unavailable');
    assert.equal(scope.jwksHits, 1);
    scope.failWith = null;
    clock.advanceSeconds(6);
    await expectValid(v, tokenAt(clock, scope, key));
  });

  it('surfaces an unreachable JWKS, a wrong discovery issuer and a non-JWKS body as jwks_unavailable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const unreachable = verifier({ jwksUri: `http://127.0.0.1:${port}/jwks.json` });
    await expectReason(unreachable, tokenAt(clock, scope, key), 'jwks_unavailable');

    scope.discoveryIssuer = 'https://evil.example';
    await expectReason(verifier(), tokenAt(clock, scope, key), 'jwks_unavailable');
    scope.discoveryIssuer = null;

    const notJwks = verifier({ jwksUri: `${scope.issuer}/.well-known/openid-configuration` });
    await expectReason(notJwks, tokenAt(clock, scope, key), 'jwks_unavailable');
  });

  it('never rejects from verify(), whatever it is given', async () => {
    const v = verifier();
    for (const bad of ['', 'a.b.c', null, 42, 'x'.repeat(100_000)]) {
      const r = await v.verify(bad as unknown as string);
      assert.equal(r.valid, false);
    }
  });

  it('requires issuer and audience, and refuses plain http to other hosts', () => {
    const base = { issuer: scope.issuer, audience: AUDIENCE };
    assert.throws(() => createVerifier({ ...base, issuer: '' }), TypeError);
    assert.throws(() => createVerifier({ ...base, audience: '  ' }), TypeError);
    assert.throws(() => createVerifier({ audience: AUDIENCE } as unknown as VerifierOptions), TypeError);
    assert.throws(() => createVerifier({ issuer: scope.issuer } as unknown as VerifierOptions), TypeError);
    assert.throws(() => createVerifier({ ...base, issuer: 'http://kw.example/scopes/x' }), TypeError);
    assert.throws(() => createVerifier({ ...base, jwksUri: 'http://kw.example/jwks.json' }), TypeError);
    assert.doesNotThrow(() =>
      createVerifier({ ...base, jwksUri: 'http://kw.example/jwks.json', allowInsecureHttp: true }),
    );
    assert.throws(() => createVerifier({ ...base, refetchBudget: { perMinute: -1 } }), RangeError);
  });

  it('takes a ca (PEM) or a fetch, not both, and refuses a ca that is not PEM', () => {
    const base = { issuer: scope.issuer, audience: AUDIENCE };
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    assert.doesNotThrow(() => createVerifier({ ...base, ca: pem }));
    assert.doesNotThrow(() => createVerifier({ ...base, ca: [pem, Buffer.from(pem)] }));
    assert.throws(() => createVerifier({ ...base, ca: pem, fetch: globalThis.fetch }), TypeError);
    for (const ca of ['not pem', [], [pem, 42]]) {
      assert.throws(() => createVerifier({ ...base, ca } as unknown as VerifierOptions), TypeError);
    }
  });
});
