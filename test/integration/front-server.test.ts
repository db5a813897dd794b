/**
 * The daemon's listening front on real sockets: a handler switch lets the old handler finish what
 * it took, the drain answers late arrivals with 503 + Connection: close and resets nothing, and a
 * busy address is LISTEN_FAILED.
 */
import * as assert from 'node:assert/strict';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:net';
import pino from 'pino';
import { FrontServer, probeListen } from '../../src/http/front-server';
import { KeywardenError } from '../../src/policy/errors';

interface Reply {
  status: number;
  connection: string | undefined;
  body: string;
}

function get(url: string, agent: Agent | false = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, connection: r.headers.connection, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A handler answering `name`, holding requests to /slow until release() is called. */
function handler(name: string) {
  const held: ServerResponse[] = [];
  return {
    handle: (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/slow') held.push(res);
      else res.end(name);
    },
    held,
    release: () => {
      for (const r of held.splice(0)) r.end(`${name} (slow)`);
    },
  };
}

const log = pino({ level: 'silent' });
const until = async (cond: () => boolean) => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

describe('FrontServer', () => {
  let front: FrontServer;
  let base: string;

  beforeEach(() => {
    front = new FrontServer({
      log,
      drain: { quietMs: 100, lingerMs: 2000, inFlightMs: 5000, closeMs: 1000 },
    });
  });

  afterEach(async () => {
    await front.drain();
  });

  const start = async (h: ReturnType<typeof handler>) => {
    void front.use(h.handle);
    const [address] = await front.listen({ host: '127.0.0.1', port: 0 });
    base = address!;
  };

  it('switches new requests to a new handler; the old one finishes what it took, then use() resolves', async () => {
    const one = handler('one');
    const two = handler('two');
    await start(one);
    const slow = get(`${base}/slow`);
    await until(() => one.held.length === 1);
    let retired = false;
    const switched = front.use(two.handle).then(() => (retired = true));
    assert.equal((await get(`${base}/`)).body, 'two');
    assert.equal(retired, false, 'the old handler still has a request');
    one.release();
    assert.equal((await slow).body, 'one (slow)');
    await switched;
    assert.equal(retired, true);
  });

  it('drains: a request in flight finishes, later ones get 503 + Connection: close, then the port closes', async () => {
    const h = handler('one');
    await start(h);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await get(`${base}/`, agent)).body, 'one'); // an idle keep-alive connection now
    const slow = get(`${base}/slow`);
    await until(() => h.held.length === 1);
    const drained = front.drain();
    const late = await get(`${base}/`);
    assert.equal(late.status, 503);
    assert.equal(late.connection, 'close');
    assert.equal((JSON.parse(late.body) as { error: { code: string } }).error.code, 'SHUTTING_DOWN');
    // The keep-alive connection's next request is answered too, not reset.
    const onKeptConnection = await get(`${base}/`, agent);
    assert.equal(onKeptConnection.status, 503);
    h.release();
    assert.equal((await slow).body, 'one (slow)');
    await drained;
    await assert.rejects(get(`${base}/`), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED');
    agent.destroy();
  });

  describe('an address in use', () => {
    let blocker: Server;
    let port: number;

    before(async () => {
      blocker = createServer();
      await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
      port = (blocker.address() as { port: number }).port;
    });

    after(() => new Promise<void>((r) => blocker.close(() => r())));

    const isListenFailed = (e: unknown) =>
      e instanceof KeywardenError &&
      e.code === 'LISTEN_FAILED' &&
      e.message ===
        `cannot listen on 127.0.0.1:${port}: the address is already in use (another process listens on it) (EADDRINUSE)`;

    it('is LISTEN_FAILED from listen, naming the address and the reason', async () => {
      void front.use(handler('one').handle);
      await assert.rejects(front.listen({ host: '127.0.0.1', port }), isListenFailed);
      assert.equal(front.servers.length, 0);
    });

    it('is LISTEN_FAILED from the start-up probe', async () => {
      await assert.rejects(probeListen({ host: '127.0.0.1', port }), isListenFailed);
    });
  });
});
