import type { Logger } from 'pino';
import type { DataSource, EntityManager } from 'typeorm';
import type { KeyBackend } from '../backends/key-backend';
import { checkpointAudit } from '../lifecycle/audit-checkpoint';
import type { AuditContext } from '../lifecycle/audit-key';
import type { AuditEvent, AuditSink } from '../lifecycle/audit-sink';
import { systemClock, type Clock } from '../policy/clock';
import type { KeywardenConfig } from '../policy/scope';
import { KeyRepository } from '../store/key-repository';
import { createScopeLock } from '../store/scope-lock';
import { AuditStore } from './audit-store';
import { scrubAuditData } from './scrub';

export interface StoreAuditSinkOptions {
  /** The runtime's clock (record `at`, checkpoint due times). Default: the system clock. */
  clock?: Clock;
  /** Check for a due checkpoint shortly after writes (default true; tests may drive it by hand). */
  autoCheckpoint?: boolean;
  /** Delay between a write and the checkpoint check, ms (lets the writer's transaction commit). */
  checkpointDelayMs?: number;
}

const clip = (s: string, n: number): string => (s.length > n ? s.slice(0, n) : s);

/**
 * The hash-chained, store-backed audit sink (I7). `record` appends inside the caller's
 * transaction (or its own), so a state change and its record commit or roll back together.
 * After writes it checks, off the request path, whether a signed checkpoint is due.
 */
export class StoreAuditSink implements AuditSink {
  readonly store: AuditStore;
  private readonly clock: Clock;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private rerun = false;
  private closed = false;
  private actx: AuditContext;

  constructor(
    config: KeywardenConfig,
    private readonly ds: DataSource,
    backend: (name: string) => Promise<KeyBackend>,
    private readonly log: Logger,
    private readonly opts: StoreAuditSinkOptions = {},
  ) {
    this.store = new AuditStore(ds);
    this.clock = opts.clock ?? systemClock;
    this.actx = {
      config,
      clock: this.clock,
      log,
      ds,
      keys: new KeyRepository(ds),
      lock: createScopeLock(ds),
      audit: this,
      backend,
    };
  }

  async record(event: AuditEvent, manager?: EntityManager): Promise<void> {
    const content = {
      at: this.clock.now(),
      type: clip(String(event.type), 64),
      actor: clip(String(event.actor), 200),
      scope: event.scope == null ? null : clip(String(event.scope), 64),
      kid: event.kid == null ? null : clip(String(event.kid), 64),
      data: scrubAuditData(event.data),
    };
    if (manager) await this.store.append(manager, content);
    else await this.ds.transaction((m) => this.store.append(m, content));
    this.log.debug({ audit: { type: content.type, scope: content.scope, kid: content.kid } }, 'audit record');
    this.scheduleCheckpoint(this.opts.checkpointDelayMs ?? 250);
  }

  /** Writes a checkpoint if one is due now (serialised within this process). */
  checkpointIfDue(): Promise<void> {
    if (this.running) {
      this.rerun = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.rerun = false;
        if (this.closed || !this.ds.isInitialized) return;
        if (this.connectionBusy()) {
          // Do not start inside another flow's transaction on SQLite's single connection.
          this.scheduleCheckpoint(this.opts.checkpointDelayMs ?? 250);
          return;
        }
        try {
          await checkpointAudit(this.actx);
        } catch (e) {
          // A one-shot command closing its store mid-checkpoint is not worth a warning.
          const level = this.closed || !this.ds.isInitialized ? 'debug' : 'warn';
          this.log[level](
            { err: (e as Error).message },
            'audit checkpoint failed; retried after the next write',
          );
        }
      } while (this.rerun);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Waits for background checkpoint work in flight (tests, shutdown). */
  async settle(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      if (this.opts.autoCheckpoint !== false) await this.checkpointIfDue();
    }
    await this.running;
  }

  /** Stops background work; later writes still append but no longer trigger checkpoints. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * SQLite in one process is one connection: statements issued now would run inside whatever
   * transaction another flow has open. PostgreSQL hands each transaction its own connection.
   */
  private connectionBusy(): boolean {
    if (this.store.pg) return false;
    const qr = (this.ds.driver as { queryRunner?: { isTransactionActive?: boolean } }).queryRunner;
    return qr?.isTransactionActive === true;
  }

  private scheduleCheckpoint(delayMs: number): void {
    if (this.opts.autoCheckpoint === false || this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.checkpointIfDue().then(() => this.scheduleTimeBased());
    }, delayMs);
    this.timer.unref();
  }

  /** Uncovered records that are not due by count become due by age: look again later. */
  private scheduleTimeBased(): void {
    if (this.closed || this.timer || !this.ds.isInitialized) return;
    void this.store
      .head()
      .then(async (head) => {
        const last = await this.store.latestOfType('audit.checkpoint');
        if (head.seq > (last?.seq ?? 0)) {
          const everyMs = this.actx.config.audit.checkpointEverySeconds * 1000;
          this.scheduleCheckpoint(Math.min(Math.max(everyMs, 1000), 60_000));
        }
      })
      .catch(() => undefined);
  }
}

/** Builds the store-backed sink; the signature matches `RuntimeOptions['audit']`. */
export function storeAuditSinkFactory(config: KeywardenConfig, opts: StoreAuditSinkOptions = {}) {
  return (
    ds: DataSource,
    backend: (name: string) => Promise<KeyBackend>,
    log: Logger,
    clock?: Clock,
  ): StoreAuditSink => new StoreAuditSink(config, ds, backend, log, { ...opts, clock: opts.clock ?? clock });
}
