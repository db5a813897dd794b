/**
 * The HTTP server as createServer builds it, on a real loopback socket: the JWKS fast path
 * (node:http, ahead of fastify) must answer exactly what the fastify route answers, only what it
 * can answer exactly, and nothing once the server is closing. app.inject() never reaches the
 * fast path (it calls fastify's handler directly), so everything here goes through sockets.
 */
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import fastify, { type FastifyInstance } from 'fastify';
import { WORKER_HEADER } from '../../src/cluster/worker-identity';
import { jwksPath } from '../../src/http/jwks-routes';
import { createServer } from '../../src/http/server';
import { createHttpServer } from '../../src/daemon';
import { routeTable } from '../../src/http/routes';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { FakeClock } from '../../src/policy/clock';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Reads `count` HTTP/1.1 responses off a socket: Content-Length framed, no body for 304 or
 * for an answer to HEAD (`head`).
 */
function readResponses(socket: Socket, count: number, head = false): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const out: RawResponse[] = [];
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [statusLine, ...lines] = buffered.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        const status = Number(statusLine!.split(' ')[1]);
        const length = status === 304 || head ? 0 : Number(headers['content-length'] ?? 0);
        if (buffered.length < end + 4 + length) return;
        out.push({ status, headers, body: buffered.subarray(end + 4, end + 4 + length).toString() });
        buffered = buffered.subarray(end + 4 + length);
        if (out.length === count) {
          socket.off('data', onData);
          resolve(out);
          return;
        }
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () =>
      reject(new Error(`connection closed after ${out.length} of ${count} responses`)),
    );
  });
}

function request(method: string, target: string, headers: Record<string, string> = {}): string {
  const lines = Object.entries({ host: 'kw.test', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
  return `${method} ${target} HTTP/1.1\r\n${lines.join('')}\r\n`;
}

describe('HTTP server: the JWKS fast path on a real socket', function () {
  this.timeout(120_000);
  let trt: TestRuntime;
  let app: FastifyInstance;
  let port: number;

  /** A connection to `app` (or to the server on `to`). */
  const open = (to = port) =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect(to, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
  /** One request on its own connection. */
  async function send(raw: string): Promise<RawResponse> {
    const s = await open();
    try {
      const reading = readResponses(s, 1, raw.startsWith('HEAD '));
      s.write(raw);
      return (await reading)[0]!;
    } finally {
      s.destroy();
    }
  }
  /** `send`, also saying whether fastify answered it rather than the fast path. */
  async function sendCounted(raw: string): Promise<{ r: RawResponse; viaFastify: boolean }> {
    const before = app.jwksFastPath.answered;
    const r = await send(raw);
    return { r, viaFastify: app.jwksFastPath.answered === before };
  }

  before(async () => {
    trt = await startTestRuntime([{ name: 'consumer' }, { name: 'partner' }], {
      clock: new FakeClock(Date.UTC(2026, 5, 1, 12, 0, 0)),
    });
    await reconcileAll(trt.ctx, 'test');
    await trt.ctx.cache.refresh(true);
    // As `serve` builds it: the token service's routes and metrics, and a worker header.
    app = createHttpServer(trt.kw, {
      publicBaseUrl: 'http://127.0.0.1',
      responseHeaders: { [WORKER_HEADER]: '3' },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
  });

  after(async () => {
    await app?.close();
    await trt?.close();
  });

  it('leaves the server fastify made, and its connection settings, as fastify made them', async () => {
    const plain = fastify({ logger: false });
    try {
      for (const k of [
        'keepAliveTimeout',
        'requestTimeout',
        'headersTimeout',
        'timeout',
        'maxRequestsPerSocket',
      ] as const)
        assert.equal(app.server[k], plain.server[k], k);
    } finally {
      await plain.close();
    }
  });

  it("stays on with the daemon's own plugins: none adds a root-level request hook", async () => {
    await app.ready();
    assert.equal(app.jwksFastPath.enabled, true);
  });

  it('answers a GET of the exact path without fastify, with the bytes and headers the fastify route gives', async () => {
    for (const scope of ['consumer', 'partner']) {
      const fast = await sendCounted(request('GET', jwksPath(scope)));
      // A query string is not the exact path: fastify's static route answers it.
      const routed = await sendCounted(request('GET', `${jwksPath(scope)}?via=fastify`));
      assert.equal(fast.viaFastify, false, 'the fast path answered');
      assert.equal(routed.viaFastify, true, 'fastify answered');
      for (const { r } of [fast, routed]) {
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'application/jwk-set+json');
        assert.equal(r.headers[WORKER_HEADER], '3');
        // max-age carries up to 10% jitter per answer; the policy's jwksMaxAge is 1m.
        const maxAge = /^public, max-age=(\d+)$/.exec(r.headers['cache-control'] ?? '');
        assert.ok(maxAge && Number(maxAge[1]) <= 60 && Number(maxAge[1]) >= 54, r.headers['cache-control']);
        const keys = (JSON.parse(r.body) as { keys: { iss: string }[] }).keys;
        assert.ok(keys.length > 0 && keys.every((k) => k.iss === `https://issuer.test/${scope}`));
      }
      assert.equal(fast.r.body, routed.r.body);
      assert.equal(fast.r.headers.etag, routed.r.headers.etag);
      const names = (r: RawResponse) => Object.keys(r.headers).sort();
      assert.deepEqual(names(fast.r), names(routed.r));
      assert.equal(fast.r.headers['content-length'], routed.r.headers['content-length']);

      const etag = fast.r.headers.etag!;
      const fast304 = await sendCounted(request('GET', jwksPath(scope), { 'if-none-match': etag }));
      const routed304 = await sendCounted(request('GET', `${jwksPath(scope)}?x`, { 'if-none-match': etag }));
      assert.equal(fast304.viaFastify, false);
      assert.equal(routed304.viaFastify, true);
      for (const { r } of [fast304, routed304]) {
        assert.equal(r.status, 304);
        assert.equal(r.headers.etag, etag);
        assert.equal(r.headers[WORKER_HEADER], '3');
        assert.equal(r.body, '');
      }
      assert.deepEqual(names(fast304.r), names(routed304.r));
    }
  });

  it('If-None-Match compares weakly on both paths: a weak, listed or * match is 304, any other tag 200', async () => {
    const etag = (await send(request('GET', jwksPath('consumer')))).headers.etag!;
    const cases: [string, number][] = [
      [`W/${etag}`, 304],
      [`"other", ${etag}`, 304],
      ['*', 304],
      [etag.slice(0, -2) + '"', 200],
      [`"other"`, 200],
    ];
    for (const [value, status] of cases) {
      const fast = await sendCounted(request('GET', jwksPath('consumer'), { 'if-none-match': value }));
      const routed = await sendCounted(
        request('GET', `${jwksPath('consumer')}?x`, { 'if-none-match': value }),
      );
      assert.equal(fast.viaFastify, false, value);
      assert.equal(routed.viaFastify, true, value);
      assert.equal(fast.r.status, status, value);
      assert.equal(routed.r.status, status, value);
      assert.equal(fast.r.body, routed.r.body, value);
    }
  });

  it('a scope whose keys are not loaded gets 503 NO_ACTIVE_KEY from fastify', async () => {
    const cache = trt.ctx.cache;
    const view = cache.view.bind(cache);
    cache.view = (scope: string) => (scope === 'partner' ? undefined : view(scope));
    try {
      const { r, viaFastify } = await sendCounted(request('GET', jwksPath('partner')));
      assert.equal(viaFastify, true);
      assert.equal(r.status, 503);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'NO_ACTIVE_KEY');
      assert.equal((await sendCounted(request('GET', jwksPath('consumer')))).viaFastify, false);
    } finally {
      cache.view = view;
    }
  });

  it('request bodies, 100-continue, HTTP/1.0 and Connection: close cannot smuggle a request past it', async () => {
    const path = jwksPath('consumer');
    const smuggled = request('GET', '/nowhere');
    const s = await open();
    try {
      // A GET with a body that looks like a request, by Content-Length and chunked, then a real
      // pipelined request: the bodies are bodies (no 404 for /nowhere), the next request is served.
      const reading = readResponses(s, 3);
      s.write(
        `GET ${path} HTTP/1.1\r\nhost: kw.test\r\ncontent-length: ${smuggled.length}\r\n\r\n${smuggled}` +
          `GET ${path} HTTP/1.1\r\nhost: kw.test\r\ntransfer-encoding: chunked\r\n\r\n` +
          `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n` +
          request('GET', '/scopes/partner/.well-known/openid-configuration'),
      );
      const answers = await reading;
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 200, 200],
      );
      assert.equal(
        (JSON.parse(answers[2]!.body) as { issuer: string }).issuer,
        'https://issuer.test/partner',
      );
    } finally {
      s.destroy();
    }
    // Both framings at once is refused by node's parser before anyone answers.
    const both = await send(
      `GET ${path} HTTP/1.1\r\nhost: kw.test\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
    );
    assert.equal(both.status, 400);

    const before = app.jwksFastPath.answered;
    const c = await open();
    try {
      const reading = readResponses(c, 2);
      c.write(request('GET', path, { expect: '100-continue' }));
      // node answers 100 Continue first; the JWKS follows on the same connection.
      assert.deepEqual(
        (await reading).map((a) => a.status),
        [100, 200],
      );
    } finally {
      c.destroy();
    }
    const old = await send(`GET ${path} HTTP/1.0\r\n\r\n`);
    assert.equal(old.status, 200);
    assert.equal(old.headers.connection, 'close');
    const closing = await send(request('GET', path, { connection: 'close' }));
    assert.equal(closing.status, 200);
    assert.equal(closing.headers.connection, 'close');
    assert.equal(app.jwksFastPath.answered, before + 3, 'the fast path answered all three');
  });

  it('a request hook added at the root turns it off, so the hook sees JWKS requests; one inside register does not', async () => {
    const seen: string[] = [];
    const routes = routeTable({ kw: trt.kw, publicBaseUrl: 'http://127.0.0.1' });
    const hooked = createServer(trt.kw, { routes });
    hooked.register(async (child) => {
      child.addHook('onRequest', async () => undefined);
    });
    const rooted = createServer(trt.kw, { routes });
    rooted.addHook('onResponse', (req, _reply, done) => {
      seen.push(req.url);
      done();
    });
    try {
      for (const a of [hooked, rooted]) await a.listen({ host: '127.0.0.1', port: 0 });
      const get = (a: FastifyInstance) =>
        fetch(`http://127.0.0.1:${(a.server.address() as { port: number }).port}${jwksPath('consumer')}`);
      assert.equal((await get(hooked)).status, 200);
      assert.equal(hooked.jwksFastPath.enabled, true);
      assert.equal(hooked.jwksFastPath.answered, 1);
      assert.equal((await get(rooted)).status, 200);
      assert.equal(rooted.jwksFastPath.enabled, false);
      assert.equal(rooted.jwksFastPath.answered, 0);
      assert.deepEqual(seen, [jwksPath('consumer')]);
    } finally {
      await hooked.close();
      await rooted.close();
    }
  });

  it('hands every request it cannot answer exactly to fastify', async () => {
    const path = jwksPath('consumer');
    const cases: [string, string, number][] = [
      ['HEAD', path, 200],
      ['POST', path, 404],
      ['DELETE', path, 404],
      ['GET', `${path}/`, 404],
      ['GET', path.toUpperCase(), 404],
      ['GET', path.replace('consumer', 'CONSUMER'), 404],
      ['GET', path.replace('jwks.json', 'jwks%2Ejson'), 200], // fastify decodes it: the same document
      ['GET', path.replace('/scopes/', '/scopes//'), 404],
      ['GET', jwksPath('nope'), 404],
      ['GET', jwksPath('_audit'), 404],
      ['GET', `http://kw.test${path}`, 200], // absolute-form: fastify routes it by its path
      ['GET', `${path}#frag`, 200],
      ['GET', `${path}?`, 200],
    ];
    for (const [method, target, status] of cases) {
      const { r, viaFastify } = await sendCounted(request(method, target));
      assert.equal(viaFastify, true, `${method} ${target} reached fastify`);
      assert.equal(r.status, status, `${method} ${target}`);
      assert.equal(r.headers[WORKER_HEADER], '3', `${method} ${target}: fastify adds the worker header too`);
    }
  });

  it('keeps pipelined answers in order when fast-path and fastify answers are mixed on one connection', async () => {
    const s = await open();
    try {
      const order = [
        jwksPath('consumer'),
        '/scopes/partner/.well-known/openid-configuration', // an async fastify handler
        jwksPath('partner'),
        `${jwksPath('consumer')}?x`,
        jwksPath('consumer'),
        '/nowhere',
        jwksPath('partner'),
      ];
      const reading = readResponses(s, order.length);
      s.write(order.map((p) => request('GET', p)).join(''));
      const answers = await reading;
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 200, 200, 200, 200, 404, 200],
      );
      const issuerOf = (a: RawResponse) =>
        (JSON.parse(a.body) as { keys?: { iss: string }[]; issuer?: string }).keys?.[0]?.iss ??
        (JSON.parse(a.body) as { issuer?: string }).issuer;
      assert.deepEqual(answers.map(issuerOf), [
        'https://issuer.test/consumer',
        'https://issuer.test/partner',
        'https://issuer.test/partner',
        'https://issuer.test/consumer',
        'https://issuer.test/consumer',
        undefined,
        'https://issuer.test/partner',
      ]);
    } finally {
      s.destroy();
    }
  });

  it('an exception while answering goes to fastify, which answers 500, and the server carries on', async () => {
    const cache = trt.ctx.cache;
    const jwks = cache.jwks.bind(cache);
    cache.jwks = () => {
      throw new Error('injected failure');
    };
    try {
      const { r, viaFastify } = await sendCounted(request('GET', jwksPath('consumer')));
      assert.equal(viaFastify, true);
      assert.equal(r.status, 500);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'INTERNAL');
    } finally {
      cache.jwks = jwks;
    }
    const { r, viaFastify } = await sendCounted(request('GET', jwksPath('consumer')));
    assert.equal(viaFastify, false);
    assert.equal(r.status, 200);
  });

  it("once closing, answers nothing: a request on a busy connection gets fastify's 503 and Connection: close", async () => {
    // A second server on the same runtime, with a route that holds its connection busy while
    // the server closes (an idle keep-alive connection would simply be closed).
    let entered!: () => void;
    const inSlow = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const closing = createServer(trt.kw, {
      routes: routeTable({ kw: trt.kw, publicBaseUrl: 'http://127.0.0.1' }),
    });
    closing.get('/test/slow', async () => {
      entered();
      await gate;
      return { slow: true };
    });
    await closing.listen({ host: '127.0.0.1', port: 0 });
    const closingPort = (closing.server.address() as { port: number }).port;
    // Without responseHeaders (the default), the fast path sends no worker header.
    const plain = await fetch(`http://127.0.0.1:${closingPort}${jwksPath('consumer')}`);
    assert.equal(plain.status, 200);
    assert.equal(closing.jwksFastPath.answered, 1);
    assert.equal(plain.headers.get(WORKER_HEADER), null);
    const s = await open(closingPort);
    try {
      const reading = readResponses(s, 2);
      s.write(request('GET', '/test/slow'));
      await inSlow;
      const closed = closing.close();
      await new Promise((r) => setTimeout(r, 50));
      s.write(request('GET', jwksPath('consumer')));
      await new Promise((r) => setTimeout(r, 50));
      release();
      const [slow, jwks] = await reading;
      assert.equal(slow!.status, 200);
      assert.equal(jwks!.status, 503);
      assert.equal(jwks!.headers.connection, 'close');
      await closed;
      assert.equal(closing.jwksFastPath.answered, 1, 'nothing more answered by the fast path');
    } finally {
      release();
      s.destroy();
      await closing.close();
    }
  });
});
