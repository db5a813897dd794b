/**
 * Revocation push end to end: a daemon with two workers serves the key-events streams, relying
 * parties subscribe (raw SSE clients and the library's verifiers), an operator runs `keys revoke`
 * with the CLI (another process, writing the SQLite store), and every subscriber refuses the key
 * long before the JWKS's Cache-Control would have let it refetch. The deadline here is generous
 * (correctness, not speed: the latency is measured by `npm run bench -- revocation`).
 */
import { strict as assert } from 'node:assert';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import fastify from 'fastify';
import { createVerifier, type Verifier } from '@keywarden/verify';
import { keywardenAuth as expressAuth } from '@keywarden/verify/express';
import { keywardenAuth as fastifyAuth } from '@keywarden/verify/fastify';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { until } from '../helpers/wait';

interface RawEvent {
  id: string | null;
  event: string;
  data: string;
}

/** A raw SSE client with its own minimal parser (not the library's), recording what arrives. */
class RawStream {
  readonly events: RawEvent[] = [];
  comments = 0;
  worker: string | null = null;
  status = 0;
  body: string | null = null;
  private readonly controller = new AbortController();
  private pending = '';

  static async open(url: string, lastEventId?: string): Promise<RawStream> {
    const s = new RawStream();
    const res = await fetch(url, {
      headers: { accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
      signal: s.controller.signal,
    });
    s.status = res.status;
    s.worker = res.headers.get('x-keywarden-worker');
    if (res.status !== 200) {
      s.body = await res.text();
      return s;
    }
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          s.pending += decoder.decode(value, { stream: true });
          let end: number;
          while ((end = s.pending.indexOf('\n\n')) >= 0) {
            const frame = s.pending.slice(0, end);
            s.pending = s.pending.slice(end + 2);
            s.frame(frame);
          }
        }
      } catch {
        // aborted
      }
    })();
    return s;
  }

  private frame(frame: string): void {
    const e: RawEvent = { id: null, event: 'message', data: '' };
    let fields = 0;
    for (const line of frame.split('\n')) {
      if (line.startsWith(':')) {
        this.comments++;
        continue;
      }
      const [name, ...rest] = line.split(':');
      const value = rest.join(':').replace(/^ /, '');
      if (name === 'id') e.id = value;
      else if (name === 'event') e.event = value;
      else if (name === 'data') e.data += value;
      else continue;
      fields++;
    }
    if (fields > 0 && e.data) this.events.push(e);
  }

  keyEvents(): { id: string | null; etag: string; kids: string[]; scope: string }[] {
    return this.events
      .filter((e) => e.event === 'keys')
      .map((e) => ({ id: e.id, ...(JSON.parse(e.data) as { etag: string; kids: string[]; scope: string }) }));
  }

  close(): void {
    this.controller.abort();
  }
}

describe('revocation push: key-events streams and subscribed verifiers (e2e)', function () {
  this.timeout(180_000);
  let daemon: Daemon;
  const streams: RawStream[] = [];
  const verifiers: Verifier[] = [];
  const PER_ADDRESS = 6;
  const eventsUrl = (scope: string) => `${daemon.baseUrl}/scopes/${scope}/key-events`;

  before(async () => {
    daemon = await startDaemon({
      scopes: [{ name: 'push' }, { name: 'quiet' }],
      workers: 2,
      workerHeader: true,
      keyEvents: { heartbeatSeconds: 1, maxConnectionsPerAddress: PER_ADDRESS },
    });
  });
  afterEach(() => {
    for (const s of streams.splice(0)) s.close();
    for (const v of verifiers.splice(0)) v.close();
  });
  after(async () => {
    await daemon?.stop();
  });

  async function signToken(scope: string): Promise<string> {
    const r = await daemon.cli([
      'sign',
      '--scope',
      scope,
      '--claims',
      JSON.stringify({ sub: 'alice', aud: `${scope}-api` }),
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  }
  const kidOf = (token: string) =>
    (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
  async function jwks(scope: string): Promise<{ etag: string; kids: string[] }> {
    const res = await fetch(daemon.jwksUrl(scope));
    const body = (await res.json()) as { keys: { kid: string }[] };
    return { etag: res.headers.get('etag')!, kids: body.keys.map((k) => k.kid) };
  }

  it("a CLI revoke reaches every worker's streams and every subscribed verifier; an unsubscribed one still trusts the key", async () => {
    const token = await signToken('push');
    const kid = kidOf(token);
    const before = await jwks('push');
    assert.ok(before.kids.includes(kid));

    // Raw subscribers, spread over both workers by the cluster.
    for (let i = 0; i < 4; i++) streams.push(await RawStream.open(eventsUrl('push')));
    const quiet = await RawStream.open(eventsUrl('quiet'));
    streams.push(quiet);
    assert.deepEqual(
      new Set(streams.map((s) => s.worker)),
      new Set(['1', '2']),
      'streams on both workers (server.workerHeader names the slot)',
    );
    for (const s of streams.slice(0, 4)) {
      const first = await until('the current key set on connect', async () => s.keyEvents()[0]);
      assert.equal(first.id, before.etag, 'the event id is the JWKS ETag');
      assert.equal(first.etag, before.etag);
      assert.deepEqual(first.kids, before.kids);
      assert.equal(first.scope, 'push');
    }

    // Library subscribers (discovery finds the stream), and one relying party that only polls.
    const options = { issuer: daemon.issuer('push'), audience: 'push-api' };
    for (let i = 0; i < 4; i++)
      verifiers.push(createVerifier({ ...options, keyEvents: { idleTimeoutSeconds: 5 } }));
    const polling = createVerifier(options);
    verifiers.push(polling);
    for (const v of verifiers) assert.equal((await v.verify(token)).valid, true);
    await until('every verifier subscribed', async () =>
      verifiers.slice(0, 4).every((v) => v.keyEvents().connected && v.keyEvents().events >= 1)
        ? true
        : undefined,
    );
    assert.equal(polling.keyEvents().enabled, false);

    const revoke = await daemon.cli(['keys', 'revoke', '--reason', 'e2e: leaked', '--', kid]);
    assert.equal(revoke.code, 0, revoke.stderr);
    const revokedAt = Date.now();

    for (const [i, v] of verifiers.slice(0, 4).entries()) {
      await until(
        `verifier ${i} to refuse the revoked key`,
        async () => {
          const r = await v.verify(token);
          return r.valid ? undefined : r;
        },
        { ms: 15_000, everyMs: 50, context: () => JSON.stringify(v.keyEvents()) },
      ).then((r) => assert.equal(r.valid === false && r.reason, 'kid_unknown', JSON.stringify(r)));
    }
    // Generous: this asserts that the push works, not how fast (bench/revocation.ts measures).
    assert.ok(Date.now() - revokedAt < 15_000);

    for (const s of streams.slice(0, 4)) {
      const last = await until('the revocation event', async () =>
        s.keyEvents().find((e) => !e.kids.includes(kid)),
      );
      assert.notEqual(last.id, before.etag);
      assert.equal(last.id, last.etag);
    }
    // Revoking the signing key also makes its replacement: a second change that each worker
    // loads on its own poll, so streams and the JWKS converge rather than agree at one instant.
    const after = await until('every stream on the JWKS as served', async () => {
      const served = await jwks('push');
      return streams.slice(0, 4).every((s) => s.keyEvents().at(-1)!.etag === served.etag)
        ? served
        : undefined;
    });
    assert.ok(!after.kids.includes(kid), 'the revoked key left the JWKS');
    // The relying party without the stream keeps its cached JWKS (max-age: up to jwksMaxAge).
    assert.equal((await polling.verify(token)).valid, true, 'polling alone still trusts the revoked key');
    // Another scope's subscribers hear nothing of it: one event (on connect), then heartbeats.
    assert.equal(quiet.keyEvents().length, 1);
    assert.ok(quiet.comments >= 1, 'heartbeats arrive');
  });

  it('the fastify and Express middleware with keyEvents: a daemon token reaches the route; after a CLI revoke, 401 invalid_token', async () => {
    const token = await signToken('push');
    const kid = kidOf(token);
    // One subscribed verifier per middleware (the `verifier` option), so the test can see each
    // stream open before revoking: otherwise JWKS polling alone could pass a loose deadline.
    const subscribed = () =>
      createVerifier({
        issuer: daemon.issuer('push'),
        audience: 'push-api',
        keyEvents: { idleTimeoutSeconds: 5 },
      });
    const fVerifier = subscribed();
    const xVerifier = subscribed();
    verifiers.push(fVerifier, xVerifier);
    const options = { issuer: daemon.issuer('push'), audience: 'push-api' };
    const fApp = fastify();
    await fApp.register(async (api) => {
      await api.register(fastifyAuth, { ...options, verifier: fVerifier });
      api.get('/orders', async (req) => ({ sub: req.auth?.claims.sub }));
    });
    const fBase = await fApp.listen({ port: 0, host: '127.0.0.1' });
    const xAuth = expressAuth({ ...options, verifier: xVerifier });
    const xApp = express();
    xApp.get('/orders', xAuth, (req, res) => void res.json({ sub: req.auth?.claims.sub }));
    const xServer = await new Promise<Server>((r) => {
      const srv = xApp.listen(0, '127.0.0.1', () => r(srv));
    });
    const xBase = `http://127.0.0.1:${(xServer.address() as AddressInfo).port}`;
    try {
      const call = async (base: string) => {
        const res = await fetch(`${base}/orders`, { headers: { authorization: `Bearer ${token}` } });
        return { status: res.status, challenge: res.headers.get('www-authenticate'), body: await res.text() };
      };
      for (const base of [fBase, xBase]) {
        const ok = await call(base);
        assert.equal(ok.status, 200, ok.body);
        assert.deepEqual(JSON.parse(ok.body), { sub: 'alice' });
      }
      // Each verifier subscribes after its first discovery (made by the requests above).
      await until('both middlewares subscribed', async () =>
        [fVerifier, xVerifier].every((v) => v.keyEvents().connected && v.keyEvents().events >= 1)
          ? true
          : undefined,
      );

      const revoke = await daemon.cli(['keys', 'revoke', '--reason', 'e2e: middleware', '--', kid]);
      assert.equal(revoke.code, 0, revoke.stderr);
      for (const base of [fBase, xBase]) {
        const refused = await until(
          `${base} to refuse the revoked key`,
          async () => {
            const r = await call(base);
            return r.status === 200 ? undefined : r;
          },
          { ms: 15_000, everyMs: 50 },
        );
        assert.equal(refused.status, 401, refused.body);
        assert.equal(refused.challenge, 'Bearer error="invalid_token", error_description="kid_unknown"');
      }
      // The revoke's second change (the replacement key) reaches each worker on its own poll: let
      // both serve the same set before the next test compares ETags.
      const replacement = kidOf(await signToken('push'));
      await until('both workers on the set with the replacement', async () => {
        const seen = await Promise.all([0, 1, 2, 3].map(() => jwks('push')));
        return seen.every(
          (j) => j.etag === seen[0]!.etag && j.kids.includes(replacement) && !j.kids.includes(kid),
        )
          ? true
          : undefined;
      });
    } finally {
      xAuth.close();
      xServer.closeAllConnections();
      await new Promise<void>((r) => xServer.close(() => r()));
      await fApp.close();
    }
  });

  it('Last-Event-ID: a returning client is sent only a key set it has not heard of', async () => {
    const current = await jwks('push');
    const upToDate = await RawStream.open(eventsUrl('push'), current.etag);
    const behind = await RawStream.open(eventsUrl('push'), '"an-older-key-set"');
    streams.push(upToDate, behind);
    const missed = await until('the missed key set', async () => behind.keyEvents()[0]);
    assert.equal(missed.etag, current.etag);
    await until('two heartbeats', async () => (upToDate.comments >= 2 ? true : undefined), { ms: 10_000 });
    assert.equal(upToDate.keyEvents().length, 0, 'nothing to resume: no event, only heartbeats');
  });

  it('streams are capped per client address (per process); JWKS and discovery answer meanwhile', async () => {
    const opened: RawStream[] = [];
    let refused: RawStream | undefined;
    // Each worker counts its own connections: at most 2 x PER_ADDRESS succeed.
    for (let i = 0; i < 2 * PER_ADDRESS + 1 && !refused; i++) {
      const s = await RawStream.open(eventsUrl('push'));
      streams.push(s);
      if (s.status === 200) opened.push(s);
      else refused = s;
    }
    assert.ok(refused, 'a stream beyond the cap is refused');
    assert.ok(opened.length >= PER_ADDRESS && opened.length <= 2 * PER_ADDRESS, String(opened.length));
    assert.equal(refused.status, 429);
    assert.equal((JSON.parse(refused.body!) as { error: { code: string } }).error.code, 'RATE_LIMITED');
    const j = await fetch(daemon.jwksUrl('push'));
    assert.equal(j.status, 200);
    const d = await fetch(`${daemon.issuer('push')}/.well-known/openid-configuration`);
    assert.equal(((await d.json()) as Record<string, string>).keywarden_key_events_uri, eventsUrl('push'));
    // Closing streams frees their places.
    for (const s of opened) s.close();
    await until('a place to free up', async () => {
      const s = await RawStream.open(eventsUrl('push'));
      streams.push(s);
      return s.status === 200 ? true : undefined;
    });
  });

  it('bad requests get clear errors and change nothing', async () => {
    const unknown = await fetch(eventsUrl('nope'));
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'SCOPE_NOT_FOUND');
    const post = await fetch(eventsUrl('push'), { method: 'POST', body: '{}' });
    assert.ok(post.status === 404 || post.status === 405, String(post.status));
    const odd = await RawStream.open(eventsUrl('push'), 'x'.repeat(4000));
    streams.push(odd);
    assert.equal(odd.status, 200);
    await until('the current set for an unknown id', async () => odd.keyEvents()[0]);
    assert.equal((await fetch(`${daemon.baseUrl}/healthz`)).status, 200);
  });
});
