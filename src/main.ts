import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import { LogAuditSink } from './audit/log-audit-sink';
import { openBackend } from './backends/registry';
import type { KeyBackend } from './backends/key-backend';
import type { AuditSink } from './lifecycle/audit-sink';
import { ClientTrust } from './lifecycle/client-trust';
import type { LifecycleContext } from './lifecycle/context';
import { KeyCache } from './lifecycle/key-cache';
import { KeyIntegrity } from './lifecycle/key-integrity';
import { systemClock, type Clock } from './policy/clock';
import { KeywardenError } from './policy/errors';
import type { KeywardenConfig } from './policy/scope';
import { openStore } from './store/data-source';
import { KeyRepository } from './store/key-repository';
import { createScopeLock } from './store/scope-lock';

export interface RuntimeOptions {
  clock?: Clock;
  log: Logger;
  /** Builds the audit sink once the store is open (defaults to structured log lines). */
  audit?: (
    ds: DataSource,
    backend: (name: string) => Promise<KeyBackend>,
    log: Logger,
    clock: Clock,
  ) => AuditSink;
  /** Backend factory override (tests inject pre-opened backends). */
  openBackend?: typeof openBackend;
  /**
   * Record integrity findings (refused key rows, missing rows, refused API client rows) in the
   * audit log, not only in the log. The daemon's scheduling process does; workers and one-shot
   * commands only log them, so one finding is not recorded once per process.
   */
  auditIntegrity?: boolean;
}

/** A wired process: the lifecycle context plus what must be closed on exit. */
export interface Runtime {
  ctx: LifecycleContext;
  close(): Promise<void>;
}

/**
 * The composition root: the one place that picks concrete classes (store, backends, audit
 * sink, clock) and wires them into the lifecycle context. Backends open on first use, once.
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
  const keys = new KeyRepository(ds);
  const audit = opts.audit ? opts.audit(ds, backend, opts.log, clock) : new LogAuditSink(opts.log);
  const integrity = new KeyIntegrity({
    config,
    clock,
    log: opts.log,
    backend,
    rowExists: async (id) => (await keys.findById(id)) !== null,
    audit: opts.auditIntegrity ? audit : null,
  });
  const cache = new KeyCache(config, keys, clock, opts.log, integrity);
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
    ds,
    keys,
    lock: createScopeLock(ds),
    audit,
    cache,
    clientTrust,
    backend,
  };
  await cache.refresh(true);
  return {
    ctx,
    async close() {
      cache.stop();
      for (const p of opened.values()) {
        const b = await p.catch(() => null);
        await b?.close().catch(() => undefined);
      }
      await ds.destroy().catch(() => undefined);
    },
  };
}
