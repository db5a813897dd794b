import type { Logger } from 'pino';
import type { DataSource, EntityManager } from 'typeorm';
import { StoreAuditLog } from './audit/audit-log';
import { AuditStore } from './audit/audit-store';
import { LogAuditLog } from './audit/log-audit-log';
import type { KeyBackend } from './backends/key-backend';
import { backendType, openBackend } from './backends/registry';
import { ClientTrust } from './lifecycle/client-trust';
import type { LifecycleContext } from './lifecycle/context';
import { Keywarden } from './lifecycle/keywarden';
import { KeyCache, type KeyChangeFeedFactory } from './lifecycle/key-cache';
import { KeyIntegrity } from './lifecycle/key-integrity';
import { requireBackends } from './lifecycle/require-backends';
import { ServiceHealth } from './lifecycle/service-health';
import { RecordedStates } from './lifecycle/recorded-states';
import type { AuditEvent } from './policy/audit-events';
import { systemClock, type Clock } from './policy/clock';
import { KeywardenError, type ErrorCode } from './policy/errors';
import type { KeywardenConfig } from './policy/scope';
import type { EnvironmentProblem } from './config/check-environment';

/**
 * The store's modules (TypeORM, pg: about half a second of every CLI start) load when a store
 * is opened, never at import: a CLI command that goes through the daemon never opens one.
 */
function storeModules() {
  /* eslint-disable @typescript-eslint/no-require-imports */
  return {
    ...(require('./store/data-source') as typeof import('./store/data-source')),
    ...(require('./store/key-change-notifier') as typeof import('./store/key-change-notifier')),
    ...(require('./store/scope-lock') as typeof import('./store/scope-lock')),
    ...(require('./store/sql-store') as typeof import('./store/sql-store')),
    ...(require('./store/sqlite-file-watcher') as typeof import('./store/sqlite-file-watcher')),
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
}

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
  /**
   * Refuse a store that was never initialised (STORE_NOT_INITIALIZED) instead of creating it:
   * every one-shot command but `init`, so a wrong path or config never leaves an empty store.
   */
  storeMustExist?: boolean;
  /**
   * Open every backend before anything else (`serve`): one that cannot be opened for a reason no
   * retry fixes (FATAL_AT_START: a missing module, a wrong token label or PIN) fails the start;
   * others are logged and the process starts unready. One-shot commands open backends on use.
   */
  requireBackends?: boolean;
}

/** A wired process: the use-case facade, and what must be closed on exit. */
export interface Runtime {
  /** What adapters (CLI, HTTP, scheduler) use: the use-case facade. */
  keywarden: Keywarden;
  /** The use cases' context, for the composition root's own wiring and for tests. */
  ctx: LifecycleContext;
  /** The store's connection, for tests and tools that look underneath (never for adapters). */
  ds: DataSource;
  /**
   * A facade for `config` (a reload, SIGHUP) over this runtime's store, backends and audit log,
   * with its own key cache, loaded before it is returned. The store, backends and audit settings
   * must be those of the running config (configChanges refuses a reload that changes them).
   * The facades built before stay usable until released, so requests they serve finish on them.
   */
  reconfigure(config: KeywardenConfig): Promise<RuntimeGeneration>;
  close(): Promise<void>;
}

/** One config's facade over a runtime (the first one, or a reload's). */
export interface RuntimeGeneration {
  keywarden: Keywarden;
  ctx: LifecycleContext;
  /** Stops its key cache's refresh; call once nothing uses this facade any more. */
  release(): void;
}

/** The hash-chained audit log in the store (what the daemon and the CLI record to). */
export function storeAuditLog(clock?: Clock): NonNullable<RuntimeOptions['audit']> {
  return (ds, log, runtimeClock) => new StoreAuditLog(ds, log, clock ?? runtimeClock);
}

/** Creates the data directory (owner-only) before a store is opened in it (`init`). */
/** Creates the store's directory (`init`); see ensureStoreDirectory. */
export function prepareDataDir(
  ...args: Parameters<typeof import('./store/data-source').ensureStoreDirectory>
): void {
  storeModules().ensureStoreDirectory(...args);
}

/**
 * The composition root: the one place that picks concrete classes (store, backends, audit log,
 * clock, caches) and wires them into the use cases' context and the facade. Backends open on
 * first use, once.
 */
export async function openRuntime(config: KeywardenConfig, opts: RuntimeOptions): Promise<Runtime> {
  const clock = opts.clock ?? systemClock;
  const { openStore, SqlStore, KeyChangeListener, SqliteFileWatcher, createScopeLock } = storeModules();
  const ds = await openStore(config.store.url, {}, { mustExist: opts.storeMustExist ?? false });
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
  const url = config.store.url;
  const onPostgres = url.startsWith('postgres://') || url.startsWith('postgresql://');
  const sqliteFile = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : null;
  // Per process, like the store: each config generation's key cache starts its own feed from it.
  const changeFeed: KeyChangeFeedFactory = (onChange, onMaybeChange) => {
    if (onPostgres) return new KeyChangeListener(url, { log: opts.log, onChange });
    if (sqliteFile !== null && sqliteFile !== ':memory:')
      return new SqliteFileWatcher({ file: sqliteFile, onMaybeChange, log: opts.log });
    return null;
  };
  // Per process, not per config: it checks client rows against the audit key's seals once per
  // row content, and needs only the backends (which a reload cannot change).
  const clientTrust = new ClientTrust({
    config,
    clock,
    log: opts.log,
    keys,
    backend,
    audit: opts.auditIntegrity ? audit : null,
  });
  const lock = createScopeLock(ds);
  const auditRecords = new AuditStore(ds);
  const caches = new Set<KeyCache>();
  // One per process, across reloads: what signing and key generation met lately (readiness).
  const health = new ServiceHealth(clock);
  // One per process too: rows outlive configs.
  const recordedStates = new RecordedStates(keys);
  /** What depends on the config: the key integrity check and the key cache it feeds. */
  const contextFor = (cfg: KeywardenConfig): LifecycleContext => {
    const integrity = new KeyIntegrity({
      config: cfg,
      clock,
      log: opts.log,
      backend,
      rowExists: async (id) => (await keys.findById(id)) !== null,
      audit: opts.auditIntegrity ? audit : null,
    });
    const cache = new KeyCache(cfg, keys, clock, opts.log, integrity, changeFeed);
    caches.add(cache);
    return {
      config: cfg,
      clock,
      log: opts.log,
      store,
      keys,
      lock,
      audit,
      auditRecords,
      cache,
      recordedStates,
      clientTrust,
      backend,
      health,
    };
  };
  const ctx = contextFor(config);
  const close = async (): Promise<void> => {
    for (const c of caches) c.stop();
    for (const p of opened.values()) {
      const b = await p.catch(() => null);
      await b?.close().catch(() => undefined);
    }
    await ds.destroy().catch(() => undefined);
  };
  const reconfigure = async (next: KeywardenConfig): Promise<RuntimeGeneration> => {
    const nextCtx = contextFor(next);
    const release = () => {
      nextCtx.cache.stop();
      caches.delete(nextCtx.cache);
    };
    try {
      await nextCtx.cache.refresh(true);
    } catch (e) {
      release();
      throw e;
    }
    return { keywarden: new Keywarden(nextCtx), ctx: nextCtx, release };
  };
  try {
    if (opts.requireBackends) {
      for (const f of await requireBackends(ctx)) {
        opts.log.warn(
          { backend: f.backend, code: f.error.code, err: f.error.message },
          'backend not available at start: serving unready until it answers',
        );
      }
    }
    await ctx.cache.refresh(true);
  } catch (e) {
    // Nothing to hand back: release the store connection and any backend opened so far.
    await close();
    throw e;
  }
  return { keywarden: new Keywarden(ctx), ctx, ds, reconfigure, close };
}

/** One line of `config check --deep`: what was checked, and what it found. */
export interface DeepCheckItem {
  /** What was checked: `backends.<name>[.<field>]` or `store`. */
  subject: string;
  /** `problem` fails the check; a `note` says what `init` or `serve` will do (e.g. create the store). */
  status: 'ok' | 'problem' | 'note';
  /** The error code the problem would raise when the daemon or a command met it. */
  code?: ErrorCode;
  message: string;
}

/**
 * `config check --deep`: checks, with no side effect, what the file alone cannot show, and
 * reports everything at once: the environment problems given (secret sources, module files),
 * then each backend's probe (the module loads and the token is there, with no login; Key Vault
 * answers) and the store (reachable, initialised, migrations current; opened read-only).
 */
export async function checkDeep(
  config: KeywardenConfig,
  environment: readonly EnvironmentProblem[],
): Promise<DeepCheckItem[]> {
  const items: DeepCheckItem[] = environment.map((p) => ({
    subject: p.path,
    status: 'problem',
    code: p.code,
    message: p.message,
  }));
  for (const [name, backend] of Object.entries(config.backends)) {
    // A module file that is not there cannot be loaded, a missing secret not presented: already said.
    if (environment.some((p) => p.backend === name && p.blocksProbe)) continue;
    const probe = backendType(backend.type).probe;
    if (!probe) continue;
    const r = await probe.call(backendType(backend.type), backend);
    if (r.problems.length === 0)
      items.push({ subject: `backends.${name}`, status: 'ok', message: r.summary });
    for (const p of r.problems) {
      items.push({
        subject: `backends.${name}${p.field ? `.${p.field}` : ''}`,
        status: 'problem',
        code: p.code,
        message: p.message,
      });
    }
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { inspectStore } = require('./store/inspect-store') as typeof import('./store/inspect-store');
  const s = await inspectStore(config.store.url);
  if (s.problem)
    items.push({
      subject: 'store',
      status: 'problem',
      code: 'STORE_ERROR',
      message: `${s.store}: ${s.problem}`,
    });
  else if (!s.initialised)
    items.push({
      subject: 'store',
      status: 'note',
      message: `${s.store}: not initialised yet; \`keywarden init\` (or the first \`serve\`) creates it`,
    });
  else if (s.pendingMigrations.length > 0)
    items.push({
      subject: 'store',
      status: 'note',
      message: `${s.store}: reachable; ${s.pendingMigrations.length} migration(s) pending, applied by the next init or serve (${s.pendingMigrations.join(', ')})`,
    });
  else
    items.push({
      subject: 'store',
      status: 'ok',
      message: `${s.store}: reachable, initialised, migrations current`,
    });
  return items;
}
