import { CronJob } from 'cron';
import type { LifecycleContext } from '../lifecycle/context';
import { reconcileScope, type ReconcileReport } from '../lifecycle/reconcile-scope';

export interface SchedulerHooks {
  onReport?(report: ReconcileReport, durationMs: number): void;
  onFailure?(scope: string, error: Error): void;
}

/**
 * Wakes each scope's reconcile on its cron schedule and once at start (SPIRE's rotator:
 * failures are logged and counted, retried on the next tick, and never stop the loop or the
 * other scopes). A scope's runs never overlap within this process; across processes the
 * scope lock serialises them.
 */
export class Scheduler {
  private jobs: CronJob[] = [];
  private running = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: LifecycleContext,
    private readonly hooks: SchedulerHooks = {},
  ) {}

  /** Runs every scope once now, then starts the cron jobs. */
  async start(): Promise<void> {
    await Promise.all(this.ctx.config.scopes.map((s) => this.runScope(s.name)));
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
      .finally(() => this.running.delete(scope));
    this.running.set(scope, run);
    return run;
  }

  /** Stops the cron jobs and waits for runs in flight. */
  async stop(): Promise<void> {
    for (const j of this.jobs) await j.stop();
    this.jobs = [];
    await Promise.all(this.running.values());
  }
}
