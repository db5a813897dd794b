/**
 * The library's side of revocation push, against a loopback server that plays the daemon (a
 * discovery document, a JWKS, a key-events stream) and lets the test misbehave on purpose: a
 * JWKS that is stale after an event, a stream that is down, silent or cut.
 */
import { strict as assert } from 'node:assert';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createVerifier, formatKeyEvent, toPublishedJwk, type Verifier } from '@keywarden/verify';
import { FakeClock } from '../../src/policy/clock';
import { AUDIENCE, NOW, claims, forge, makeKey, type TestKey } from '../unit/verify/fixtures';
import { until } from '../helpers/wait';

class FakeDaemon {
  server!: Server;
  base = '';
  jwksKeys: TestKey[] = [];
  jwksEtag = '"set-1"';
  jwksHits = 0;
  /** Discovery answers 503 while set (the daemon is not up yet). */
  discoveryDown = false;
  /** Answer 304 to a matching If-None-Match (a cache in between may not). */
  conditional = true;
  /** 'open': stream events; a number: answer that status; 'silent': 200 and never a byte. */
  streamMode: 'open' | 'silent' | number = 'open';
  connections: { lastEventId: string | undefined; res: ServerResponse }[] = [];

  get issuer(): string {
    return `${this.base}/scopes/orders`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Sends a key event to every open stream. */
  announce(kids: string[], etag: string): void {
    for (const c of this.connections)
      if (!c.res.writableEnded) c.res.write(formatKeyEvent({ scope: 'orders', etag, kids }));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.url === '/scopes/orders/.well-known/openid-configuration') {
      if (this.discoveryDown) {
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          issuer: this.issuer,
          jwks_uri: `${this.issuer}/.well-known/jwks.json`,
          keywarden_key_events_uri: `${this.issuer}/key-events`,
        }),
      );
      return;
    }
    if (req.url === '/scopes/orders/.well-known/jwks.json') {
      this.jwksHits++;
      if (this.conditional && req.headers['if-none-match'] === this.jwksEtag) {
        res.writeHead(304, { etag: this.jwksEtag, 'cache-control': 'public, max-age=60' }).end();
        return;
      }
      const keys = this.jwksKeys.map((k) =>
        toPublishedJwk(
          {
            kid: k.kid,
            alg: k.alg,
            publicJwk: k.publicJwk,
            activateAt: k.vk.activateAt,
            retireAt: k.vk.retireAt,
            expiresAt: k.vk.expiresAt,
            maxTokenTtlSeconds: k.vk.maxTokenTtlSeconds,
          },
          this.issuer,
        ),
      );
      res.writeHead(200, {
        'content-type': 'application/jwk-set+json',
        'cache-control': 'public, max-age=60',
        etag: this.jwksEtag,
      });
      res.end(JSON.stringify({ keys }));
      return;
    }
    if (req.url === '/scopes/orders/key-events') {
      if (typeof this.streamMode === 'number') {
        res.writeHead(this.streamMode, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      const lastEventId = req.headers['last-event-id'] as string | undefined;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      this.connections.push({ lastEventId, res });
      if (this.streamMode === 'open') {
        res.write('retry: 100\n\n');
        if (lastEventId !== this.jwksEtag)
          res.write(
            formatKeyEvent({ scope: 'orders', etag: this.jwksEtag, kids: this.jwksKeys.map((k) => k.kid) }),
          );
      }
      return;
    }
    res.writeHead(404).end();
  }
}

describe('verify library: key events (revocation push) against a loopback daemon stand-in', function () {
  this.timeout(30_000);
  let daemon: FakeDaemon;
  let clock: FakeClock;
  const verifiers: Verifier[] = [];
  const a = makeKey('ES256', {}, 0);
  const b = makeKey('ES256', {}, 1);
  const tokenOf = (k: TestKey) =>
    forge({ alg: k.alg, kid: k.kid, typ: 'JWT' }, claims({ iss: daemon.issuer }), k.privateKey);
  /** A token issued 5 s before the fake clock's now, valid for 300 s after it. */
  const tokenAtClock = (k: TestKey) => {
    const now = Math.floor(clock.now().getTime() / 1000);
    return forge(
      { alg: k.alg, kid: k.kid, typ: 'JWT' },
      claims({ iss: daemon.issuer, iat: now - 5, exp: now + 300 }),
      k.privateKey,
    );
  };
  const verifier = (o: Record<string, unknown> = {}) => {
    const v = createVerifier({ issuer: daemon.issuer, audience: AUDIENCE, clock, keyEvents: true, ...o });
    verifiers.push(v);
    return v;
  };

  beforeEach(async () => {
    daemon = new FakeDaemon();
    daemon.jwksKeys = [a, b];
    await daemon.start();
    clock = new FakeClock(NOW);
  });
  afterEach(async () => {
    for (const v of verifiers.splice(0)) v.close();
    await daemon.stop();
  });

  it('an event withdraws a kid at once, and a stale JWKS fetched afterwards cannot bring it back', async () => {
    const v = verifier();
    await until('subscribed', async () => (v.keyEvents().events >= 1 ? true : undefined));
    assert.equal(v.keyEvents().url, `${daemon.issuer}/key-events`, 'from discovery');
    assert.equal((await v.verify(tokenOf(a))).valid, true);
    const hits = daemon.jwksHits;
    // The daemon revoked `a`; the JWKS this relying party can reach still lists it, in full (a
    // worker or a cache that has not caught up, and does not answer 304).
    daemon.conditional = false;
    daemon.announce([b.kid], '"set-2"');
    const refused = await until('a refused', async () => {
      const r = await v.verify(tokenOf(a));
      return r.valid ? undefined : r;
    });
    assert.equal(refused.valid === false && refused.reason, 'kid_unknown');
    await until('refetches of the stale JWKS', async () => (daemon.jwksHits > hits + 1 ? true : undefined));
    assert.equal((await v.verify(tokenOf(a))).valid, false, 'still refused after the stale JWKS');
    assert.equal((await v.verify(tokenOf(b))).valid, true, 'the other key keeps working');
    // Not even the unknown-kid refetch path revives it.
    clock.advanceSeconds(120);
    const later = tokenAtClock(a);
    assert.equal((await v.verify(later)).valid, false);
  });

  it('an event for the key set already held fetches nothing', async () => {
    const v = verifier();
    await until('subscribed', async () => (v.keyEvents().events >= 1 ? true : undefined));
    assert.equal((await v.verify(tokenOf(a))).valid, true);
    const hits = daemon.jwksHits;
    daemon.announce([a.kid, b.kid], daemon.jwksEtag);
    await until('the event', async () => (v.keyEvents().events >= 2 ? true : undefined));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(daemon.jwksHits, hits);
    assert.equal((await v.verify(tokenOf(a))).valid, true);
  });

  it('malformed events change nothing', async () => {
    const v = verifier();
    await until('subscribed', async () => (v.keyEvents().events >= 1 ? true : undefined));
    for (const c of daemon.connections) {
      c.res.write('event: keys\ndata: {"scope":"orders","etag":"\\"x\\"","kids":"nope"}\n\n');
      c.res.write('event: keys\ndata: not json\n\n');
      c.res.write(`event: other\ndata: ${JSON.stringify({ scope: 'orders', etag: '"y"', kids: [] })}\n\n`);
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(v.keyEvents().events, 1);
    assert.equal((await v.verify(tokenOf(a))).valid, true);
  });

  it('a cut stream reconnects with Last-Event-ID and is sent only what it missed', async () => {
    const v = verifier();
    await until('subscribed', async () => (v.keyEvents().events >= 1 ? true : undefined));
    assert.equal(daemon.connections[0]!.lastEventId, undefined);
    // Revoked while the stream was down: the JWKS (now current) and the next connect say so.
    daemon.jwksKeys = [b];
    daemon.jwksEtag = '"set-3"';
    daemon.connections[0]!.res.destroy();
    await until('a second connection', async () => (daemon.connections.length >= 2 ? true : undefined));
    assert.equal(daemon.connections[1]!.lastEventId, '"set-1"');
    const r = await until('a refused', async () => {
      const res = await v.verify(tokenOf(a));
      return res.valid ? undefined : res;
    });
    assert.equal(r.valid === false && r.reason, 'kid_unknown');
  });

  it('a silent stream (no heartbeat) is treated as dead and reopened', async () => {
    daemon.streamMode = 'silent';
    const v = verifier({ keyEvents: { idleTimeoutSeconds: 2 } });
    await until(
      'a reconnect after the idle timeout',
      async () => (daemon.connections.length >= 2 ? true : undefined),
      {
        ms: 10_000,
      },
    );
    assert.match(v.keyEvents().problem ?? '', /no event or heartbeat/);
  });

  it('with the stream down, keys are refreshed by Cache-Control as without it', async () => {
    daemon.streamMode = 503;
    const v = verifier();
    assert.equal((await v.verify(tokenOf(a))).valid, true);
    await until('the failed subscription', async () => (v.keyEvents().problem ? true : undefined));
    assert.equal(v.keyEvents().connected, false);
    assert.match(v.keyEvents().problem!, /HTTP 503/);
    daemon.jwksKeys = [b];
    daemon.jwksEtag = '"set-4"';
    // Within the JWKS's max-age (60 s) the cached set is used; past it, the next token refetches.
    assert.equal((await v.verify(tokenOf(a))).valid, true);
    clock.advanceSeconds(61);
    const fresh = tokenAtClock(a);
    const r = await v.verify(fresh);
    assert.equal(r.valid === false && r.reason, 'kid_unknown');
  });

  it('a daemon down when the verifier starts: the stream opens after the first discovery that works', async () => {
    daemon.discoveryDown = true;
    const v = verifier();
    assert.equal((await v.verify(tokenOf(a))).valid, false);
    assert.equal(v.keyEvents().url, null);
    daemon.discoveryDown = false;
    clock.advanceSeconds(10); // past the failure back-off
    assert.equal((await v.verify(tokenOf(a))).valid, true);
    await until('subscribed', async () => (v.keyEvents().connected ? true : undefined));
    assert.equal(v.keyEvents().url, `${daemon.issuer}/key-events`);
  });

  it('refuses key-events options it cannot honour, at creation', () => {
    const base = { issuer: 'https://kw.example/scopes/orders', audience: AUDIENCE };
    assert.throws(
      () => createVerifier({ ...base, jwksUri: 'https://kw.example/keys.json', keyEvents: true }),
      /keyEvents/,
    );
    assert.throws(
      () => createVerifier({ ...base, keyEvents: { url: 'http://kw.example/events' } }),
      /plain http/,
    );
    assert.throws(() => createVerifier({ ...base, keyEvents: { idleTimeoutSeconds: 0 } }), RangeError);
    assert.throws(() => createVerifier({ ...base, keyEvents: 'yes' as never }), TypeError);
    const derived = createVerifier({
      ...base,
      jwksUri: 'https://kw.example/scopes/orders/.well-known/jwks.json',
      fetch: (() => new Promise(() => undefined)) as typeof fetch,
      keyEvents: true,
    });
    assert.equal(derived.keyEvents().url, 'https://kw.example/scopes/orders/key-events');
    derived.close();
  });
});
