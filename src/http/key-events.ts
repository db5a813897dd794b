import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { formatKeyEvent } from '@keywarden/verify';
import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import type { Keywarden } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import type { KeyEventsConfig } from '../policy/scope';

/** The path of a scope's key-set change stream. */
export function keyEventsPath(scope: string): string {
  return `/scopes/${scope}/key-events`;
}

/** What a client that lost the stream waits before reconnecting (the SSE `retry` field). */
const RECONNECT_MS = 1000;
/** A client that does not read falls this far behind before it is dropped. */
const MAX_BUFFERED_BYTES = 64 * 1024;

interface Stream {
  scope: string;
  address: string;
  res: ServerResponse;
  /** The ETag of the key set this client was last told of (or named in Last-Event-ID). */
  etag: string | null;
}

/**
 * The key-set change streams (Server-Sent Events), one per relying-party connection: each
 * receives the scope's key set (JWKS ETag and kids) whenever this process reloads its keys and
 * the set differs from the one the client last heard of, and a comment line every heartbeat.
 * The event id is the ETag, so a reconnect with `Last-Event-ID` is sent the current set only
 * when it changed meanwhile, whichever worker or daemon it reaches. Public data, like the JWKS.
 *
 * Writes never wait: a stream whose client stopped reading is dropped rather than buffered, so
 * no subscriber can slow the JWKS or sign paths; connections are capped per client address and
 * in all. Each process (each worker of `serve --workers N`) serves its own streams from its own
 * key cache, which learns of every store write by itself (LISTEN/NOTIFY, or the SQLite files).
 */
export class KeyEventStreams {
  private readonly streams = new Set<Stream>();
  private readonly perAddress = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private heartbeat: NodeJS.Timeout | null = null;
  private unwatch: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly kw: Keywarden,
    private readonly config: KeyEventsConfig,
  ) {}

  /** Open streams (metrics, tests). */
  get size(): number {
    return this.streams.size;
  }

  start(): void {
    if (this.unwatch) return;
    this.stopped = false;
    // Every stream, not only those of the scopes a reload changed: a set can also change by time
    // (a key expiring leaves the JWKS), and the ETag comparison sends only what a client lacks.
    this.unwatch = this.kw.watchKeySets(() => this.broadcast());
    this.heartbeat = setInterval(() => this.beat(), this.config.heartbeatSeconds * 1000);
    this.heartbeat.unref();
  }

  /** Ends every stream (their clients reconnect elsewhere) and stops watching. */
  stop(): void {
    this.stopped = true;
    this.unwatch?.();
    this.unwatch = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    for (const s of [...this.streams]) s.res.end();
    // A stream's socket is never reused: ended or abandoned, it is destroyed (see `drop`).
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  /** The route handler of every scope's stream (`/scopes/:scope/key-events`). */
  handler(): RouteHandlerMethod {
    return (req: FastifyRequest, reply: FastifyReply) => {
      // SCOPE_NOT_FOUND (404) for a scope that is not configured.
      const scope = this.kw.scope((req.params as { scope: string }).scope);
      if (this.stopped) throw new KeywardenError('NO_ACTIVE_KEY', 'shutting down');
      const current = this.kw.keySetEvent(scope.name);
      if (!current) throw new KeywardenError('NO_ACTIVE_KEY', 'keys not loaded yet');
      const address = req.socket.remoteAddress ?? 'unknown';
      if (this.streams.size >= this.config.maxConnections) {
        reply.header('retry-after', '30');
        throw new KeywardenError('RATE_LIMITED', 'too many key-event streams are open');
      }
      if ((this.perAddress.get(address) ?? 0) >= this.config.maxConnectionsPerAddress) {
        reply.header('retry-after', '30');
        throw new KeywardenError(
          'RATE_LIMITED',
          `at most ${this.config.maxConnectionsPerAddress} key-event streams per client address`,
        );
      }
      const lastEventId = req.headers['last-event-id'];
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // nginx buffers proxied responses unless told not to; an event must not wait in a buffer.
        'x-accel-buffering': 'no',
        ...(reply.getHeaders() as Record<string, string>),
      });
      res.socket?.setNoDelay(true);
      const stream: Stream = {
        scope: scope.name,
        address,
        res,
        etag: typeof lastEventId === 'string' && lastEventId.length > 0 ? lastEventId : null,
      };
      this.add(stream);
      // A stream's socket is never reused: it goes with the stream (the client left, half-closed,
      // or the daemon stops), so no connection of a finished stream lingers to hold a drain.
      const socket = req.socket;
      this.sockets.add(socket);
      const drop = () => {
        this.remove(stream);
        this.sockets.delete(socket);
        socket.destroy();
      };
      res.on('close', drop);
      socket.on('end', drop);
      this.write(stream, `retry: ${RECONNECT_MS}\n\n`);
      // A new client learns the current set; a returning one only a set it has not heard of.
      this.send(stream, current);
    };
  }

  private add(s: Stream): void {
    this.streams.add(s);
    this.perAddress.set(s.address, (this.perAddress.get(s.address) ?? 0) + 1);
  }

  private remove(s: Stream): void {
    if (!this.streams.delete(s)) return;
    const n = (this.perAddress.get(s.address) ?? 1) - 1;
    if (n <= 0) this.perAddress.delete(s.address);
    else this.perAddress.set(s.address, n);
  }

  private broadcast(): void {
    const events = new Map<string, ReturnType<Keywarden['keySetEvent']>>();
    for (const s of this.streams) {
      if (!events.has(s.scope)) events.set(s.scope, this.kw.keySetEvent(s.scope));
      const event = events.get(s.scope);
      if (event) this.send(s, event);
    }
  }

  private send(s: Stream, event: NonNullable<ReturnType<Keywarden['keySetEvent']>>): void {
    if (s.etag !== null && sameEtag(s.etag, event.etag)) return;
    s.etag = event.etag;
    this.write(s, formatKeyEvent(event));
  }

  private beat(): void {
    for (const s of this.streams) this.write(s, ': heartbeat\n\n');
  }

  private write(s: Stream, text: string): void {
    if (s.res.writableLength > MAX_BUFFERED_BYTES) {
      // Not reading: drop it (it reconnects with Last-Event-ID and misses nothing).
      s.res.destroy();
      this.remove(s);
      return;
    }
    s.res.write(text);
  }
}

function sameEtag(a: string, b: string): boolean {
  const strip = (t: string) => (t.startsWith('W/') ? t.slice(2) : t);
  return strip(a) === strip(b);
}
