/**
 * The fastify plugin and the Express middleware of @keywarden/verify, each in a real server of
 * its framework on loopback, against a JWKS served on loopback the way keywarden publishes it.
 * Every refused request is checked for its RFC 6750 challenge and for not reaching the route.
 */
import { strict as assert } from 'node:assert';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fastify, { type FastifyInstance } from 'fastify';
import { toPublishedJwk } from '@keywarden/verify';
import { keywardenAuth as fastifyAuth, type BearerAuthOptions } from '@keywarden/verify/fastify';
import { keywardenAuth as expressAuth } from '@keywarden/verify/express';
import { FakeClock } from '../../src/policy/clock';
import {
  AUDIENCE,
  NOW,
  NOW_S,
  forge,
  claims,
  makeKey,
  publishable,
  type TestKey,
} from '../unit/verify/fixtures';

interface Served {
  base: string;
  /** Requests that reached the protected route. */
  reached: number;
  close(): Promise<void>;
}

/** A discovery document and JWKS for one issuer; `failing` makes the JWKS answer 500. */
async function keyServer(
  key: TestKey,
): Promise<{ issuer: string; state: { failing: boolean }; server: Server }> {
  const state = { failing: false };
  const server = createServer((req, res) => {
    const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/scopes/orders`;
    if (req.url === '/scopes/orders/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/.well-known/jwks.json` }));
    } else if (req.url === '/scopes/orders/.well-known/jwks.json' && !state.failing) {
      const jwk = toPublishedJwk(publishable(key), issuer);
      res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'max-age=5' });
      res.end(JSON.stringify({ keys: [jwk] }));
    } else {
      res.writeHead(500).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/scopes/orders`;
  return { issuer, state, server };
}

type Framework = 'fastify' | 'express';

async function serve(framework: Framework, options: BearerAuthOptions): Promise<Served> {
  const served = { base: '', reached: 0 } as Served;
  if (framework === 'fastify') {
    const app: FastifyInstance = fastify();
    app.get('/health', async () => ({ ok: true }));
    await app.register(async (api) => {
      await api.register(fastifyAuth, options);
      api.get('/orders', async (req) => {
        served.reached++;
        return { sub: req.auth?.claims.sub, kid: req.auth?.kid };
      });
    });
    served.base = await app.listen({ port: 0, host: '127.0.0.1' });
    served.close = () => app.close();
    return served;
  }
  const app = express();
  const auth = expressAuth(options);
  app.get('/health', (_req, res) => void res.json({ ok: true }));
  app.get('/orders', auth, (req, res) => {
    served.reached++;
    res.json({ sub: req.auth?.claims.sub, kid: req.auth?.kid });
  });
  const server = await new Promise<Server>((r) => {
    const s = app.listen(0, '127.0.0.1', () => r(s));
  });
  served.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  served.close = async () => {
    auth.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return served;
}

async function get(base: string, authorization?: string) {
  const res = await fetch(`${base}/orders`, { headers: authorization ? { authorization } : {} });
  const text = await res.text();
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    retryAfter: res.headers.get('retry-after'),
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

for (const framework of ['fastify', 'express'] as const) {
  describe(`@keywarden/verify ${framework} middleware`, function () {
    this.timeout(30_000);
    const key = makeKey('ES256');
    const stranger = makeKey('ES256', {}, 1);
    let issuer: string;
    let keys: Awaited<ReturnType<typeof keyServer>>;
    let app: Served;
    const clock = new FakeClock(NOW);
    const token = (over: Record<string, unknown> = {}, k = key, header: Record<string, unknown> = {}) =>
      forge(
        { alg: k.alg, kid: k.kid, typ: 'JWT', ...header },
        claims({ iss: issuer, scope: 'orders:read orders:write', tenant: 'acme', ...over }),
        k.privateKey,
      );

    before(async () => {
      keys = await keyServer(key);
      issuer = keys.issuer;
      app = await serve(framework, {
        issuer,
        audience: AUDIENCE,
        clock,
        requireScopes: ['orders:read'],
        requireClaims: { tenant: 'acme', sub: (v) => typeof v === 'string' && v.startsWith('user-') },
        realm: 'orders',
      });
    });
    after(async () => {
      await app.close();
      keys.server.closeAllConnections();
      await new Promise<void>((r) => keys.server.close(() => r()));
    });

    it('a valid token with the required scopes and claims reaches the route with its claims', async () => {
      const before = app.reached;
      const r = await get(app.base, `Bearer ${token()}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { sub: 'user-1', kid: key.kid });
      assert.equal(app.reached, before + 1);
      // The scheme name is case-insensitive (RFC 6750 §2.1 via RFC 9110 §11.1).
      assert.equal((await get(app.base, `bearer ${token()}`)).status, 200);
    });

    it('no token: 401 with the bare challenge (RFC 6750 §3.1: no error code), route not reached', async () => {
      const before = app.reached;
      const r = await get(app.base);
      assert.equal(r.status, 401);
      assert.equal(r.challenge, 'Bearer realm="orders"');
      assert.equal(r.body.reason, 'token_missing');
      assert.equal(app.reached, before);
    });

    it('a header that is not "Bearer <token>": 400 invalid_request', async () => {
      for (const h of ['Basic dXNlcjpwYXNz', `Bearer ${token()} extra`, 'Bearer', `Bearer  "${token()}"`]) {
        const r = await get(app.base, h);
        assert.equal(r.status, 400, h);
        assert.match(r.challenge ?? '', /^Bearer realm="orders", error="invalid_request"/);
      }
    });

    it('refused tokens: 401 invalid_token with the reason code as error_description, route not reached', async () => {
      const before = app.reached;
      const cases: [string, string][] = [
        [token({ aud: 'another-api' }), 'audience_mismatch'],
        [token({ iss: 'https://elsewhere.example/scopes/orders' }), 'issuer_mismatch'],
        [token({ exp: NOW_S - 120 }), 'token_expired'],
        [token({ exp: NOW_S + 2 * 86_400, iat: NOW_S - 10 }), 'token_lifetime_exceeded'],
        [forge({ alg: 'none', kid: key.kid }, claims({ iss: issuer }), null), 'alg_forbidden'],
        [token({}, stranger), 'kid_unknown'],
        // The right kid, signed by another key: the attacker's usual move.
        [token({}, stranger, { kid: key.kid }), 'signature_invalid'],
        [token({}, key, { jku: 'https://attacker.example/jwks' }), 'header_forbidden'],
        [`${token().slice(0, -4)}AAAA`, 'signature_invalid'],
        [token({ tenant: 'other' }), 'claim_mismatch'],
        [token({ sub: 'service-9' }), 'claim_mismatch'],
      ];
      for (const [t, reason] of cases) {
        const r = await get(app.base, `Bearer ${t}`);
        assert.equal(r.status, 401, `${reason}: ${JSON.stringify(r.body)}`);
        assert.equal(
          r.challenge,
          `Bearer realm="orders", error="invalid_token", error_description="${reason}"`,
          reason,
        );
        assert.equal(r.body.error, 'invalid_token');
        assert.equal(r.body.reason, reason);
      }
      assert.equal(app.reached, before);
    });

    it('missing scopes: 403 insufficient_scope naming the scopes required', async () => {
      const before = app.reached;
      for (const scope of ['orders:write', 'orders:reader', undefined]) {
        const r = await get(app.base, `Bearer ${token({ scope })}`);
        assert.equal(r.status, 403);
        assert.equal(
          r.challenge,
          'Bearer realm="orders", error="insufficient_scope", error_description="scope_insufficient", scope="orders:read"',
        );
      }
      // `scp` as an array (some issuers) counts too.
      assert.equal(
        (await get(app.base, `Bearer ${token({ scope: undefined, scp: ['orders:read'] })}`)).status,
        200,
      );
      assert.equal(app.reached, before + 1);
    });

    it('keys that cannot be fetched: 503 with Retry-After, not a 401 that would make clients drop the token', async () => {
      keys.state.failing = true;
      // Past the JWKS max-age and the failure back-off, so the next token needs a fetch.
      clock.advanceSeconds(3600);
      try {
        const t = forge(
          { alg: key.alg, kid: key.kid, typ: 'JWT' },
          claims({
            iss: issuer,
            scope: 'orders:read',
            tenant: 'acme',
            iat: Math.floor(clock.now().getTime() / 1000) - 5,
            nbf: Math.floor(clock.now().getTime() / 1000) - 5,
            exp: Math.floor(clock.now().getTime() / 1000) + 300,
          }),
          key.privateKey,
        );
        const r = await get(app.base, `Bearer ${t}`);
        assert.equal(r.status, 503);
        assert.equal(r.body.reason, 'jwks_unavailable');
        assert.equal(r.retryAfter, '5');
        keys.state.failing = false;
        clock.advanceSeconds(10);
        assert.equal((await get(app.base, `Bearer ${t}`)).status, 200);
      } finally {
        keys.state.failing = false;
      }
    });

    it('routes outside the protected context or route are left alone', async () => {
      const res = await fetch(`${app.base}/health`);
      assert.equal(res.status, 200);
    });
  });
}

describe('@keywarden/verify middleware options', () => {
  it('refuses bad options at start-up, before serving anything', () => {
    const base = { issuer: 'https://kw.example/scopes/orders', audience: 'orders-api' };
    assert.throws(() => expressAuth({ ...base, audience: '' }), TypeError);
    assert.throws(() => expressAuth({ ...base, requireScopes: ['has space'] }), TypeError);
    assert.throws(() => expressAuth({ ...base, requireClaims: { tenant: {} as never } }), TypeError);
    assert.throws(() => expressAuth({ ...base, realm: 'a"b' }), TypeError);
    assert.throws(() => expressAuth({ ...base, issuer: 'http://kw.example/scopes/orders' }), TypeError);
  });

  it('fastify: bad options fail registration', async () => {
    const app = fastify();
    await assert.rejects(
      (async () => {
        await app.register(fastifyAuth, {
          issuer: 'https://kw.example/x',
          audience: 'a',
          requireScopes: [''],
        });
        await app.ready();
      })(),
      TypeError,
    );
    await app.close().catch(() => undefined);
  });
});
