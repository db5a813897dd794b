import { CronJob } from 'cron';
import { maintainClientSeals } from '../lifecycle/client-seals';
import type { LifecycleContext } from '../lifecycle/context';
import { findOrphans, type OrphanScanReport } from '../lifecycle/find-orphans';
import { reconcileScope, type ReconcileReport } from '../lifecycle/reconcile-scope';
import { nextDecisionAt } from '../policy/next-actions';

/** setTimeout's ceiling; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface SchedulerHooks {
  onReport?(report: ReconcileReport, durationMs: number): void;
  onFailure?(scope: string, error: Error): void;
  /** After each orphan scan of each backend (e.g. to export the count as a metric). */
  onOrphanScan?(report: OrphanScanReport): void;
}

export interface SchedulerOptions {
  /** How often backends are scanned for orphan objects (also once at start). Default 1 h. */
  orphanScanIntervalMs?: number;
  /**
   * How often API client rows are checked against their seals (findings recorded in the audit
   * log) and seals by a retired audit key replaced (also once at start). Default 10 s.
   */
  clientSealIntervalMs?: number;
}

/**
 * Wakes each scope's reconcile on its cron schedule, once at start, and at the exact instant
 * its next decision falls due (so a successor is created on time, not a cron tick late and
 * with a signing gap; the cron schedule is the heartbeat that catches anything else). SPIRE's rotator:
 * failures are logged and counted, retried on the next tick, and never stop the loop or the
 * other scopes). A scope's runs never overlap within this process; across processes the
 * scope lock serialises them.
 */
export class Scheduler {
  private jobs: CronJob[] = [];
  private running = new Map<string, Promise<void>>();
  private timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  private orphanTimer: NodeJS.Timeout | null = null;
  private orphanScan: Promise<void> | null = null;
  private clientTimer: NodeJS.Timeout | null = null;
  private clientPass: Promise<void> | null = null;

  constructor(
    private readonly ctx: LifecycleContext,
    private readonly hooks: SchedulerHooks = {},
    private readonly opts: SchedulerOptions = {},
  ) {}

  /**
   * Runs every scope once now, then starts the cron jobs and the orphan scans (the first one
   * right away, in the background: it lists every backend and must not delay serving).
   */
  async start(): Promise<void> {
    await Promise.all(this.ctx.config.scopes.map((s) => this.runScope(s.name)));
    void this.scanOrphans();
    this.orphanTimer = setInterval(
      () => void this.scanOrphans(),
      this.opts.orphanScanIntervalMs ?? 3_600_000,
    );
    this.orphanTimer.unref();
    void this.maintainClients();
    this.clientTimer = setInterval(
      () => void this.maintainClients(),
      this.opts.clientSealIntervalMs ?? 10_000,
    );
    this.clientTimer.unref();
    for (const s of this.ctx.config.scopes) {
      this.jobs.push(
        CronJob.from({
          cronTime: s.schedule,
          onTick: () => void this.runScope(s.name),
          start: true,
          utcOffset: 0,
        }),
      );
    }
  }

  /** Runs one scope's reconcile unless one is already running here. Never rejects. */
  runScope(scope: string): Promise<void> {
    const existing = this.running.get(scope);
    if (existing) return existing;
    const started = Date.now();
    const run = reconcileScope(this.ctx, scope)
      .then((report) => {
        for (const e of report.errors) this.hooks.onFailure?.(scope, new Error(e.message));
        this.hooks.onReport?.(report, Date.now() - started);
      })
      .catch((e: Error) => {
        this.ctx.log.error({ scope, err: e.message }, 'reconcile failed');
        this.hooks.onFailure?.(scope, e);
      })
      .finally(() => this.running.delete(scope))
      .then(() => this.armTimer(scope))
      .catch((e: Error) => this.ctx.log.error({ scope, err: e.message }, 'cannot schedule next reconcile'));
    this.running.set(scope, run);
    return run;
  }

  /**
   * Scans every backend for objects with keywarden's label and no key row, and reports them
   * (never deletes them). Runs once at a time; never rejects.
   */
  scanOrphans(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.orphanScan ??= findOrphans(this.ctx)
      .then((reports) => {
        for (const r of reports) this.hooks.onOrphanScan?.(r);
      })
      .catch((e: Error) => this.ctx.log.error({ err: e.message }, 'orphan scan failed'))
      .finally(() => {
        this.orphanScan = null;
      });
    return this.orphanScan;
  }

  /**
   * Checks API client rows against their seals and re-seals those made by an audit key that no
   * longer signs (maintainClientSeals). Runs once at a time; never rejects.
   */
  maintainClients(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.clientPass ??= maintainClientSeals(this.ctx)
      .then(() => undefined)
      .catch((e: Error) => this.ctx.log.error({ err: e.message }, 'API client seal maintenance failed'))
      .finally(() => {
        this.clientPass = null;
      });
    return this.clientPass;
  }

  /** Arms a one-shot timer for the scope's next decision instant (replacing any earlier one). */
  private async armTimer(scope: string): Promise<void> {
    if (this.stopped) return;
    const config = this.ctx.config.scopes.find((s) => s.name === scope);
    if (!config) return;
    const now = this.ctx.clock.now();
    const next = nextDecisionAt(config.policy, await this.ctx.keys.listByScope(scope), now);
    clearTimeout(this.timers.get(scope));
    this.timers.delete(scope);
    if (!next || this.stopped) return;
    // A few ms late rather than early: at the instant itself the decision is due.
    const delay = Math.min(next.getTime() - now.getTime() + 5, MAX_TIMER_MS);
    const timer = setTimeout(() => void this.runScope(scope), Math.max(delay, 0));
    timer.unref();
    this.timers.set(scope, timer);
  }

  /** Stops the cron jobs and waits for runs in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    this.orphanTimer = null;
    if (this.clientTimer) clearInterval(this.clientTimer);
    this.clientTimer = null;
    for (const j of this.jobs) await j.stop();
    this.jobs = [];
    await Promise.all([...this.running.values(), this.orphanScan, this.clientPass]);
  }
}
