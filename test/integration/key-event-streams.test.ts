/**
 * The key-events streams' bounds, in process on a real SoftHSM2 token and a loopback server as
 * `serve` builds it: past `maxConnections` in all a stream is refused with 429 and Retry-After,
 * and while every place is taken by relying parties that never read a byte, the JWKS and the
 * sign route still answer (the streams are public and must not become a way to stop signing).
 * The per-address cap and the stream's content are covered end to end in revocation-push.test.ts.
 */
import { strict as assert } from 'node:assert';
import { connect, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createHttpServer } from '../../src/daemon';
import { KeyEventStreams } from '../../src/http/key-events';
import { addClient } from '../../src/lifecycle/clients';
import { reconcileAll } from '../../src/lifecycle/reconcile-scope';
import { until } from '../helpers/wait';
import { startTestRuntime, type TestRuntime } from '../helpers/runtime';

const MAX_CONNECTIONS = 3;

describe('key-events streams: the connection cap, with the JWKS and sign paths answering', function () {
  this.timeout(120_000);
  let trt: TestRuntime;
  let app: FastifyInstance;
  let streams: KeyEventStreams;
  let port: number;
  let secret: string;
  const sockets: Socket[] = [];

  before(async () => {
    trt = await startTestRuntime([{ name: 'orders' }]);
    await reconcileAll(trt.ctx, 'test');
    await trt.ctx.cache.refresh(true);
    // A per-address cap far above the total: only `maxConnections` can refuse here.
    streams = new KeyEventStreams(trt.kw, {
      heartbeatSeconds: 1,
      maxConnectionsPerAddress: 100,
      maxConnections: MAX_CONNECTIONS,
    });
    streams.start();
    app = createHttpServer(trt.kw, { publicBaseUrl: 'http://127.0.0.1', keyEvents: streams });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as { port: number }).port;
    secret = (await addClient(trt.ctx, 'signer', { orders: ['sign'] }, 'test')).secret;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    streams?.stop();
    await app?.close();
    await trt?.close();
  });

  /** A subscriber that sends its request and then never reads: its socket is paused. */
  function silentSubscriber(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => {
        s.write(
          'GET /scopes/orders/key-events HTTP/1.1\r\nhost: kw.test\r\naccept: text/event-stream\r\n\r\n',
        );
        s.pause();
        resolve(s);
      });
      s.once('error', reject);
      sockets.push(s);
    });
  }

  it('refuses the stream past maxConnections with 429 and Retry-After; JWKS and sign answer meanwhile', async () => {
    for (let i = 0; i < MAX_CONNECTIONS; i++) await silentSubscriber();
    await until('every place taken', async () => (streams.size === MAX_CONNECTIONS ? true : undefined));

    const refused = await fetch(`http://127.0.0.1:${port}/scopes/orders/key-events`);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('retry-after'), '30');
    const body = (await refused.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'RATE_LIMITED');
    assert.match(body.error.message, /too many key-event streams/);
    assert.equal(streams.size, MAX_CONNECTIONS, 'the refused request took no place');

    // Heartbeats keep being written to the silent subscribers; the other paths are unaffected.
    await new Promise((r) => setTimeout(r, 1500));
    const jwks = await fetch(`http://127.0.0.1:${port}/scopes/orders/.well-known/jwks.json`);
    assert.equal(jwks.status, 200);
    assert.ok(((await jwks.json()) as { keys: unknown[] }).keys.length > 0);
    const signed = await fetch(`http://127.0.0.1:${port}/v1/scopes/orders/sign`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ claims: { sub: 'alice', aud: 'orders-api' } }),
    });
    assert.equal(signed.status, 200, await signed.clone().text());
    assert.match(((await signed.json()) as { token: string }).token, /^[\w-]+\.[\w-]+\.[\w-]+$/);

    // A place freed by a subscriber that leaves is a place for the next one.
    sockets.shift()!.destroy();
    await until('the place freed', async () => (streams.size === MAX_CONNECTIONS - 1 ? true : undefined));
    const next = await fetch(`http://127.0.0.1:${port}/scopes/orders/key-events`);
    assert.equal(next.status, 200);
    assert.match(next.headers.get('content-type') ?? '', /^text\/event-stream/);
    await next.body?.cancel();
  });
});
