import type { Logger } from 'pino';
import type { DataSource, EntityManager } from 'typeorm';
import { StoreAuditLog } from './audit/audit-log';
import { AuditStore } from './audit/audit-store';
import { LogAuditLog } from './audit/log-audit-log';
import type { KeyBackend } from './backends/key-backend';
import { openBackend } from './backends/registry';
import { ClientTrust } from './lifecycle/client-trust';
import type { LifecycleContext } from './lifecycle/context';
import { Keywarden } from './lifecycle/keywarden';
import { KeyCache, type KeyChangeFeedFactory } from './lifecycle/key-cache';
import { KeyIntegrity } from './lifecycle/key-integrity';
import type { AuditEvent } from './policy/audit-events';
import { systemClock, type Clock } from './policy/clock';
import { KeywardenError } from './policy/errors';
import type { KeywardenConfig } from './policy/scope';
import { openStore } from './store/data-source';
import { KeyChangeListener } from './store/key-change-notifier';
import { createScopeLock } from './store/scope-lock';
import { SqlStore } from './store/sql-store';
import { SqliteFileWatcher } from './store/sqlite-file-watcher';

/** An audit log as the composition root wires it: append-only, and inside a store transaction when it can. */
export interface AuditLogImpl {
  record(event: AuditEvent): Promise<void>;
  /** Appends inside the store's transaction `m` (absent: recorded on its own, e.g. in memory). */
  appendIn?(m: EntityManager, event: AuditEvent): Promise<void>;
}

export interface RuntimeOptions {
  clock?: Clock;
  log: Logger;
  /** Builds the audit log once the store is open (default: structured log lines only). */
  audit?: (ds: DataSource, log: Logger, clock: Clock) => AuditLogImpl;
  /** Backend factory override (tests inject pre-opened backends). */
  openBackend?: typeof openBackend;
  /**
   * Record integrity findings (refused key rows, missing rows, refused API client rows) in the
   * audit log, not only in the log. The daemon's scheduling process does; workers and one-shot
   * commands only log them, so one finding is not recorded once per process.
   */
  auditIntegrity?: boolean;
}

/** A wired process: the use-case facade, and what must be closed on exit. */
export interface Runtime {
  /** What adapters (CLI, HTTP, scheduler) use: the use-case facade. */
  keywarden: Keywarden;
  /** The use cases' context, for the composition root's own wiring and for tests. */
  ctx: LifecycleContext;
  /** The store's connection, for tests and tools that look underneath (never for adapters). */
  ds: DataSource;
  close(): Promise<void>;
}

/** The hash-chained audit log in the store (what the daemon and the CLI record to). */
export function storeAuditLog(clock?: Clock): NonNullable<RuntimeOptions['audit']> {
  return (ds, log, runtimeClock) => new StoreAuditLog(ds, log, clock ?? runtimeClock);
}

/** Creates the data directory (owner-only) before a store is opened in it (`init`). */
export { ensureStoreDirectory as prepareDataDir } from './store/data-source';

/**
 * The composition root: the one place that picks concrete classes (store, backends, audit log,
 * clock, caches) and wires them into the use cases' context and the facade. Backends open on
 * first use, once.
 */
export async function openRuntime(config: KeywardenConfig, opts: RuntimeOptions): Promise<Runtime> {
  const clock = opts.clock ?? systemClock;
  const ds = await openStore(config.store.url);
  const opened = new Map<string, Promise<KeyBackend>>();
  const open = opts.openBackend ?? openBackend;
  const backend = (name: string): Promise<KeyBackend> => {
    let p = opened.get(name);
    if (!p) {
      const cfg = config.backends[name];
      if (!cfg) return Promise.reject(new KeywardenError('CONFIG_INVALID', `unknown backend ${name}`));
      p = open(cfg);
      // A failed open is retried next time instead of caching the failure forever.
      p.catch(() => opened.delete(name));
      opened.set(name, p);
    }
    return p;
  };
  const audit: AuditLogImpl = opts.audit ? opts.audit(ds, opts.log, clock) : new LogAuditLog(opts.log);
  const store = new SqlStore(ds, (m, event) =>
    audit.appendIn ? audit.appendIn(m, event) : audit.record(event),
  );
  const keys = store.keys;
  const integrity = new KeyIntegrity({
    config,
    clock,
    log: opts.log,
    backend,
    rowExists: async (id) => (await keys.findById(id)) !== null,
    audit: opts.auditIntegrity ? audit : null,
  });
  const url = config.store.url;
  const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');
  const sqliteFile = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : null;
  const changeFeed: KeyChangeFeedFactory = (onChange, onMaybeChange) => {
    if (onPostgres) return new KeyChangeListener(url, { log: opts.log, onChange });
    if (sqliteFile !== null && sqliteFile !== ':memory:')
      return new SqliteFileWatcher({ file: sqliteFile, onMaybeChange, log: opts.log });
    return null;
  };
  const cache = new KeyCache(config, keys, clock, opts.log, integrity, changeFeed);
  const clientTrust = new ClientTrust({
    config,
    clock,
    log: opts.log,
    keys,
    backend,
    audit: opts.auditIntegrity ? audit : null,
  });
  const ctx: LifecycleContext = {
    config,
    clock,
    log: opts.log,
    store,
    keys,
    lock: createScopeLock(ds),
    audit,
    auditRecords: new AuditStore(ds),
    cache,
    clientTrust,
    backend,
  };
  const close = async (): Promise<void> => {
    cache.stop();
    for (const p of opened.values()) {
      const b = await p.catch(() => null);
      await b?.close().catch(() => undefined);
    }
    await ds.destroy().catch(() => undefined);
  };
  try {
    await cache.refresh(true);
  } catch (e) {
    // Nothing to hand back: release the store connection and any backend opened so far.
    await close();
    throw e;
  }
  return { keywarden: new Keywarden(ctx), ctx, ds, close };
}
