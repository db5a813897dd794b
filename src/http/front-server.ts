import { lookup } from 'node:dns/promises';
import * as http from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { KeywardenError } from '../policy/errors';

/** What answers requests: a generation's app (createServer's fast path and fastify behind it). */
export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Tuning of FrontServer.drain(); milliseconds. */
export interface DrainOptions {
  /** How long requests in flight at SIGTERM may take to finish before the drain goes on without them. */
  inFlightMs: number;
  /** The drain ends once no request or connection arrived for this long (clients were told to go)... */
  quietMs: number;
  /** ...or at the latest this long after the requests in flight finished, if clients keep coming. */
  lingerMs: number;
  /** How long closing connections (each one answered already) may take before they are cut. */
  closeMs: number;
}

export const DEFAULT_DRAIN: DrainOptions = {
  inFlightMs: 20_000,
  quietMs: 1_000,
  lingerMs: 5_000,
  closeMs: 2_000,
};

export interface FrontServerOptions {
  log: Logger;
  drain?: Partial<DrainOptions>;
  /**
   * Makes one listening server around `listener` (default: a plain node:http server). TLS plugs in
   * here (an https server from the config's certificates); reloads then call its
   * `setSecureContext` (see `servers`).
   */
  createServer?: (listener: http.RequestListener) => http.Server;
  /** How the listening addresses are reported: 'https' with a TLS `createServer`. Default 'http'. */
  scheme?: 'http' | 'https';
}

/** Where to listen. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** A handler with the count of requests it is answering. */
interface Generation {
  handle: RequestHandler;
  inflight: number;
  done: () => void;
  idle: (() => void)[];
}

/** Same as fastify's defaults, which keywarden served with before the front server existed. */
const KEEP_ALIVE_TIMEOUT_MS = 72_000;

const DRAIN_BODY = JSON.stringify({
  error: { code: 'SHUTTING_DOWN', message: 'keywarden is shutting down; retry on another instance' },
});

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (another process listens on it)',
  EACCES: 'permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'the address is not available on this host',
  ENOTFOUND: 'the host name does not resolve',
};

/**
 * The daemon's listening socket(s), which live as long as the process, in front of whichever
 * request handler is current. A reload (SIGHUP) builds a new handler from the new config and
 * `use`s it: requests that arrive from then on go to it, the ones the old handler took finish
 * there, and `use` resolves once they have, so the old one's resources can be released. No
 * connection is closed and no request is refused for a reload.
 *
 * `drain` (SIGTERM) stops the process without resetting a connection: requests in flight finish;
 * every request arriving during the drain gets 503 `SHUTTING_DOWN` with `Connection: close`
 * (its connection closes after that answer); the listening socket stays open until clients have
 * gone quiet, so none finds a closed port with its connection half-made (the kernel would reset
 * connections still queued on it); then idle keep-alive connections are closed (a FIN, with no
 * request on them) and the drain ends once every connection has.
 */
export class FrontServer {
  private readonly log: Logger;
  private readonly drainOpts: DrainOptions;
  private readonly makeServer: (listener: http.RequestListener) => http.Server;
  private readonly scheme: 'http' | 'https';
  private readonly listening: http.Server[] = [];
  private current: Generation | null = null;
  private draining: Promise<void> | null = null;
  private lastArrivalMs = 0;

  constructor(o: FrontServerOptions) {
    this.log = o.log;
    this.drainOpts = { ...DEFAULT_DRAIN, ...o.drain };
    this.makeServer = o.createServer ?? ((listener) => http.createServer(listener));
    this.scheme = o.scheme ?? 'http';
  }

  /** The listening servers (one per address; `localhost` may be two), e.g. for setSecureContext. */
  get servers(): readonly http.Server[] {
    return this.listening;
  }

  /**
   * Makes `handle` answer every request from now on. Resolves once the requests the previous
   * handler took have all been answered (at once when there was none).
   */
  use(handle: RequestHandler): Promise<void> {
    const next: Generation = { handle, inflight: 0, done: () => undefined, idle: [] };
    next.done = () => {
      next.inflight--;
      if (next.inflight === 0) for (const w of next.idle.splice(0)) w();
    };
    const previous = this.current;
    this.current = next;
    if (!previous || previous.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => previous.idle.push(resolve));
  }

  /**
   * Listens on `at` (both loopback addresses for `localhost`, as fastify did). A failure is
   * LISTEN_FAILED naming the address and the reason; nothing stays bound then.
   */
  async listen(at: ListenAddress): Promise<string[]> {
    if (!this.current) throw new Error('FrontServer.listen: no request handler yet');
    const hosts = at.host === 'localhost' ? await localhostAddresses() : [at.host];
    const addresses: string[] = [];
    for (const [i, host] of hosts.entries()) {
      const server = this.makeServer(this.onRequest);
      server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
      server.requestTimeout = 0;
      server.on('clientError', onClientError);
      server.on('connection', this.onConnection);
      try {
        await listenOn(server, host, at.port);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        // localhost's second address (::1) may not exist on this host; one loopback is enough.
        if (i > 0 && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT')) continue;
        await this.closeListening();
        throw listenFailed(at, e as NodeJS.ErrnoException);
      }
      this.listening.push(server);
      const a = server.address();
      addresses.push(
        typeof a === 'object' && a
          ? `${this.scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
          : String(a),
      );
    }
    return addresses;
  }

  /** True once drain() was called. */
  get isDraining(): boolean {
    return this.draining !== null;
  }

  /** See the class comment. Resolves when every connection is closed; never rejects. */
  drain(): Promise<void> {
    this.draining ??= this.runDrain();
    return this.draining;
  }

  private readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (this.draining) {
      this.refuse(req, res);
      return;
    }
    const g = this.current!;
    g.inflight++;
    // `on`, not `once`: a response closes once, and `once` wraps the listener for every request.
    res.on('close', g.done);
    g.handle(req, res);
  };

  private readonly onConnection = (): void => {
    if (this.draining) this.lastArrivalMs = performance.now();
  };

  /** 503 SHUTTING_DOWN with `Connection: close`, after reading the body (unread bytes would make the close a reset). */
  private refuse(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.lastArrivalMs = performance.now();
    const answer = () => {
      if (res.headersSent || res.destroyed) return;
      res.writeHead(503, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(DRAIN_BODY),
        connection: 'close',
        'retry-after': '1',
      });
      res.end(DRAIN_BODY);
    };
    if (req.complete) {
      answer();
      return;
    }
    req.once('end', answer);
    req.once('error', () => res.destroy());
    req.resume();
  }

  private async runDrain(): Promise<void> {
    const o = this.drainOpts;
    this.lastArrivalMs = performance.now();
    const g = this.current;
    if (g && g.inflight > 0) {
      const finished = await waitFor((resolve) => g.idle.push(resolve), o.inFlightMs);
      if (!finished) {
        this.log.warn(
          { inflight: g.inflight },
          'drain: requests still in flight after the limit; closing anyway',
        );
      }
    }
    // Keep answering (503) until clients stop arriving, within lingerMs.
    const lingerUntil = performance.now() + o.lingerMs;
    for (;;) {
      const now = performance.now();
      const quietFor = now - this.lastArrivalMs;
      if (quietFor >= o.quietMs || now >= lingerUntil) break;
      await sleep(Math.min(o.quietMs - quietFor, lingerUntil - now) + 1);
    }
    await this.closeListening();
  }

  /**
   * Stops listening and closes idle connections (node:http's close does both); waits up to
   * closeMs for the rest, which are finishing an answer with `Connection: close`, then cuts them.
   */
  private async closeListening(): Promise<void> {
    const servers = this.listening.splice(0);
    await Promise.all(
      servers.map(async (s) => {
        const closed = new Promise<void>((resolve) => s.close(() => resolve()));
        s.closeIdleConnections();
        if (!(await waitFor((resolve) => void closed.then(resolve), this.drainOpts.closeMs))) {
          s.closeAllConnections();
          await closed;
        }
      }),
    );
  }
}

/** Answers a request node:http could not parse (fastify's server did this before) and closes. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request timeout']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'request headers too large']
        : [400, 'malformed HTTP request'];
  const body = JSON.stringify({ error: { code: 'REQUEST_INVALID', message } });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

async function localhostAddresses(): Promise<string[]> {
  try {
    const found = await lookup('localhost', { all: true });
    const addresses = [...new Set(found.map((a) => a.address))];
    return addresses.length > 0 ? addresses : ['127.0.0.1'];
  } catch {
    return ['127.0.0.1'];
  }
}

function listenOn(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => {
      server.off('listening', onListening);
      reject(e);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port });
  });
}

/** LISTEN_FAILED for `at`, with the reason in words and the system's code. */
export function listenFailed(at: ListenAddress, e: NodeJS.ErrnoException): KeywardenError {
  const code = e.code ?? 'error';
  const reason = LISTEN_REASONS[code] ?? e.message;
  return new KeywardenError('LISTEN_FAILED', `cannot listen on ${at.host}:${at.port}: ${reason} (${code})`, {
    cause: e,
    details: { host: at.host, port: at.port, code },
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `register(resolve)`; true if it resolved within `ms`, false on timeout. */
function waitFor(register: (resolve: () => void) => void, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    register(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * Checks that `at` can be bound, before the daemon opens its store or backends (which write): a
 * busy port then stops start-up with LISTEN_FAILED and nothing written. The socket is released at
 * once; the real listen follows (in a cluster, through the primary), and if another process takes
 * the port in between, that listen fails with the same error.
 */
export async function probeListen(at: ListenAddress): Promise<void> {
  const host = at.host === 'localhost' ? '127.0.0.1' : at.host;
  const server = createNetServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: at.port, exclusive: true }, () => resolve());
    });
  } catch (e) {
    throw listenFailed(at, e as NodeJS.ErrnoException);
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
