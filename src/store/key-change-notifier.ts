import type { Logger } from 'pino';
import { Client } from 'pg';
import type { DataSource, EntityManager } from 'typeorm';

/** The PostgreSQL channel every key write is announced on. */
export const KEY_CHANGE_CHANNEL = 'keywarden_keys';

/**
 * Announces a key write to every daemon on the same PostgreSQL database (`NOTIFY
 * keywarden_keys`). Given the writer's transaction manager, the notification is part of that
 * transaction: PostgreSQL delivers it only at commit, so a listener that reloads on it sees the
 * change, and a rolled-back write announces nothing. A no-op on SQLite (one host, polling).
 */
export async function notifyKeyChange(ds: DataSource, manager?: EntityManager): Promise<void> {
  if (ds.options.type !== 'postgres') return;
  await (manager ?? ds.manager).query(`NOTIFY ${KEY_CHANGE_CHANNEL}`);
}

export interface KeyChangeListenerOptions {
  /** Called on every notification, and after each (re)connect (changes may have been missed). */
  onChange: () => void;
  log: Logger;
  /** First reconnect delay, doubled up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
}

/**
 * LISTENs for key changes on a dedicated PostgreSQL connection (not one of the pool's: a
 * LISTEN lives as long as its session). When the connection drops, it reconnects with backoff;
 * meanwhile the key cache's polling keeps the bound. Never throws after `start()`.
 */
export class KeyChangeListener {
  private client: Client | null = null;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private delayMs: number;
  private connectedOnce = false;
  /** Notifications received (for tests and diagnostics). */
  notifications = 0;
  /** Successful (re)connects. */
  connects = 0;

  constructor(
    private readonly url: string,
    private readonly opts: KeyChangeListenerOptions,
  ) {
    this.delayMs = opts.retryMs ?? 250;
  }

  /** True while a LISTEN session is up. */
  get listening(): boolean {
    return this.client !== null;
  }

  /** Connects and LISTENs; resolves once the first attempt succeeded or failed (then retries). */
  start(): Promise<void> {
    this.stopped = false;
    return this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new Client({
      connectionString: this.url,
      keepAlive: true,
      connectionTimeoutMillis: 5000,
      application_name: 'keywarden-listen',
    });
    let failed = false;
    const lost = (err?: Error) => {
      if (failed) return;
      failed = true;
      if (this.client === client) this.client = null;
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      if (this.stopped) return;
      this.opts.log.warn(
        { err: err?.message ?? 'connection ended', retryMs: this.delayMs },
        'key change listener lost its PostgreSQL connection; polling covers until it reconnects',
      );
      this.scheduleReconnect();
    };
    // An error on an idle client would otherwise be an uncaught 'error' event.
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (msg) => {
      if (msg.channel !== KEY_CHANGE_CHANNEL) return;
      this.notifications++;
      this.opts.onChange();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${KEY_CHANGE_CHANNEL}`);
    } catch (e) {
      lost(e as Error);
      return;
    }
    if (this.stopped || failed) {
      client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.connects++;
    this.delayMs = this.opts.retryMs ?? 250;
    if (this.connectedOnce) this.opts.log.info('key change listener reconnected');
    this.connectedOnce = true;
    // Anything written while we were not listening is picked up now.
    this.opts.onChange();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.opts.maxRetryMs ?? 10_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  /** The PostgreSQL backend pid of the LISTEN session (tests kill it to prove reconnects). */
  async backendPid(): Promise<number | null> {
    const c = this.client;
    if (!c) return null;
    const r = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return r.rows[0]?.pid ?? null;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const c = this.client;
    this.client = null;
    if (c) {
      c.removeAllListeners('notification');
      c.removeAllListeners('end');
      await c.end().catch(() => undefined);
    }
  }
}
