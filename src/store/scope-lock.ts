import { createHash, randomUUID } from 'node:crypto';
import * as os from 'node:os';
import type { DataSource } from 'typeorm';

/**
 * Serialises reconcile (and operator key changes) per scope across processes, so that two
 * daemons never rotate the same scope at once. `tryRun` returns `{ ran: false }` when another
 * process holds the lock; the caller skips (reconcile) or waits (operator commands). The
 * lifecycle's ScopeLock port (src/lifecycle/ports.ts), restated: the store may not import lifecycle/.
 */
export interface ScopeLock {
  tryRun<T>(scope: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
}

/** Advisory lock key: the first 8 bytes of SHA-256 of the scope name, as a signed bigint. */
export function advisoryKey(scope: string): string {
  return createHash('sha256').update(`keywarden:scope:${scope}`).digest().readBigInt64BE(0).toString();
}

/**
 * PostgreSQL: a session advisory lock held on a dedicated connection for the lock's lifetime.
 * (A pooled `query()` would borrow any connection, where the lock is re-entrant and so
 * useless.) If the holder dies, PostgreSQL drops its connection and the lock with it.
 */
export class PgAdvisoryScopeLock implements ScopeLock {
  constructor(private readonly ds: DataSource) {}

  async tryRun<T>(scope: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    const qr = this.ds.createQueryRunner();
    await qr.connect();
    try {
      const key = advisoryKey(scope);
      const rows = (await qr.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])) as {
        ok: boolean;
      }[];
      if (!rows[0]?.ok) return { ran: false };
      try {
        return { ran: true, value: await fn() };
      } finally {
        await qr.query('SELECT pg_advisory_unlock($1::bigint)', [key]).catch(() => undefined);
      }
    } finally {
      await qr.release();
    }
  }
}

/**
 * SQLite: a lease row per scope, taken with one conditional upsert inside SQLite's write
 * lock. Leases expire (a SIGKILLed holder blocks others for at most `leaseMs`), and a lease
 * whose holder process on this host is gone is taken over at once. While `fn` runs, the
 * holder renews its lease every `leaseMs / 3`, so a long run (a slow RSA generation, a
 * throttled vault) is never taken over from a live holder.
 */
export class SqliteLeaseScopeLock implements ScopeLock {
  private readonly holderPrefix = `${os.hostname()}:${process.pid}:`;

  constructor(
    private readonly ds: DataSource,
    private readonly leaseMs = 30_000,
  ) {}

  async tryRun<T>(scope: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    const holder = this.holderPrefix + randomUUID();
    if (!(await this.acquire(scope, holder))) return { ran: false };
    const renew = setInterval(
      () => {
        this.ds
          .query('UPDATE scope_locks SET expires_at_ms = ? WHERE scope = ? AND holder = ?', [
            Date.now() + this.leaseMs,
            scope,
            holder,
          ])
          .catch(() => undefined);
      },
      Math.max(Math.floor(this.leaseMs / 3), 10),
    );
    renew.unref();
    try {
      return { ran: true, value: await fn() };
    } finally {
      clearInterval(renew);
      await this.ds
        .query('DELETE FROM scope_locks WHERE scope = ? AND holder = ?', [scope, holder])
        .catch(() => undefined);
    }
  }

  private async acquire(scope: string, holder: string): Promise<boolean> {
    const now = Date.now();
    const current = (await this.ds.query('SELECT holder, expires_at_ms FROM scope_locks WHERE scope = ?', [
      scope,
    ])) as {
      holder: string;
      expires_at_ms: number;
    }[];
    const stale = current[0] && !holderAlive(current[0].holder) ? current[0].holder : null;
    await this.ds.query(
      `INSERT INTO scope_locks (scope, holder, expires_at_ms) VALUES (?, ?, ?)
       ON CONFLICT (scope) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
       WHERE scope_locks.expires_at_ms < ? OR scope_locks.holder = ?`,
      [scope, holder, now + this.leaseMs, now, stale ?? ''],
    );
    const after = (await this.ds.query('SELECT holder FROM scope_locks WHERE scope = ?', [scope])) as {
      holder: string;
    }[];
    return after[0]?.holder === holder;
  }
}

/** A holder `host:pid:uuid` on this host whose pid no longer exists is dead. */
function holderAlive(holder: string): boolean {
  const [host, pid] = holder.split(':');
  if (host !== os.hostname()) return true;
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function createScopeLock(ds: DataSource): ScopeLock {
  return ds.options.type === 'postgres' ? new PgAdvisoryScopeLock(ds) : new SqliteLeaseScopeLock(ds);
}
