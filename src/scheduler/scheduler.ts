import { CronJob } from 'cron';
import type { Keywarden, PeriodicJob, ReconcileReport } from '../lifecycle';

/** setTimeout's ceiling; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface SchedulerHooks {
  onReport?(report: ReconcileReport, durationMs: number): void;
  onFailure?(scope: string, error: Error): void;
}

export interface SchedulerOptions {
  /**
   * Periodic work besides reconcile (audit checkpoints, client seal upkeep, orphan scans), built
   * by the composition root (src/daemon.ts, from the facade's periodicJobs).
   */
  jobs: readonly PeriodicJob[];
}

/**
 * Wakes each scope's reconcile on its cron schedule, once at start, and at the exact instant
 * its next decision falls due (so a successor is created on time, not a cron tick late and
 * with a signing gap; the cron schedule is the heartbeat that catches anything else), and runs
 * the periodic jobs. SPIRE's rotator: failures are logged and counted, retried on the next tick,
 * and never stop the loop or the other scopes. A scope's runs never overlap within this process;
 * across processes the scope lock serialises them. A job's runs never overlap either.
 */
export class Scheduler {
  private cronJobs: CronJob[] = [];
  private running = new Map<string, Promise<void>>();
  private timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  private jobs: readonly PeriodicJob[];
  private jobTimers: NodeJS.Timeout[] = [];
  private jobRuns = new Map<string, Promise<void>>();

  constructor(
    private kw: Keywarden,
    private readonly hooks: SchedulerHooks,
    opts: SchedulerOptions,
  ) {
    this.jobs = opts.jobs;
  }

  /**
   * Runs every scope once now, then starts the cron jobs and the periodic jobs (those marked
   * `atStart` right away, in the background: an orphan scan lists every backend and must not
   * delay serving).
   */
  async start(): Promise<void> {
    await Promise.all(this.kw.config.scopes.map((s) => this.runScope(s.name)));
    this.startTimers(true);
  }

  private startTimers(runJobsAtStart: boolean): void {
    for (const job of this.jobs) {
      if (runJobsAtStart && job.atStart) void this.runJob(job);
      const t = setInterval(() => void this.runJob(job), job.everyMs);
      t.unref();
      this.jobTimers.push(t);
    }
    for (const s of this.kw.config.scopes) {
      this.cronJobs.push(
        CronJob.from({
          cronTime: s.schedule,
          onTick: () => void this.runScope(s.name),
          start: true,
          utcOffset: 0,
        }),
      );
    }
  }

  private async stopTimers(): Promise<void> {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const t of this.jobTimers) clearInterval(t);
    this.jobTimers = [];
    for (const j of this.cronJobs) await j.stop();
    this.cronJobs = [];
  }

  /**
   * After a reload (SIGHUP): from now on works with `kw` (the new config's facade) and `jobs`.
   * Reconcile passes in flight finish first (on the old facade), so no scope runs twice at once;
   * then `runNow` (added and changed scopes: an added scope gets its first key here, before the
   * reload reaches the HTTP side) run and are awaited, and every other scope's decision timer is
   * armed again from the new policy. Jobs already running finish on the old facade.
   */
  async reconfigure(kw: Keywarden, jobs: readonly PeriodicJob[], runNow: readonly string[]): Promise<void> {
    if (this.stopped) return;
    await this.stopTimers();
    await Promise.all(this.running.values());
    // Those runs armed their scope's next timer on the old facade (a removed scope's included).
    await this.stopTimers();
    this.kw = kw;
    this.jobs = jobs;
    const now = new Set(runNow);
    await Promise.all(
      kw.config.scopes.map((s) =>
        now.has(s.name)
          ? this.runScope(s.name)
          : this.armTimer(s.name).catch((e: Error) =>
              kw.log.error({ scope: s.name, err: e.message }, 'cannot schedule next reconcile'),
            ),
      ),
    );
    if (!this.stopped) this.startTimers(false);
  }

  /** Runs one scope's reconcile unless one is already running here. Never rejects. */
  runScope(scope: string): Promise<void> {
    const existing = this.running.get(scope);
    if (existing) return existing;
    const started = Date.now();
    const run = this.kw
      .reconcile(scope)
      .then((report) => {
        for (const e of report.errors) this.hooks.onFailure?.(scope, new Error(e.message));
        this.hooks.onReport?.(report, Date.now() - started);
      })
      .catch((e: Error) => {
        this.kw.log.error({ scope, err: e.message }, 'reconcile failed');
        this.hooks.onFailure?.(scope, e);
      })
      .finally(() => this.running.delete(scope))
      .then(() => this.armTimer(scope))
      .catch((e: Error) => this.kw.log.error({ scope, err: e.message }, 'cannot schedule next reconcile'));
    this.running.set(scope, run);
    return run;
  }

  private runJob(job: PeriodicJob): Promise<void> {
    if (this.stopped) return Promise.resolve();
    let run = this.jobRuns.get(job.name);
    if (!run) {
      run = job
        .run()
        .catch((e: Error) => this.kw.log.error({ job: job.name, err: e.message }, 'scheduled job failed'))
        .finally(() => this.jobRuns.delete(job.name));
      this.jobRuns.set(job.name, run);
    }
    return run;
  }

  /** Arms a one-shot timer for the scope's next decision instant (replacing any earlier one). */
  private async armTimer(scope: string): Promise<void> {
    if (this.stopped) return;
    const now = this.kw.clock.now();
    const next = await this.kw.nextDecisionAt(scope);
    clearTimeout(this.timers.get(scope));
    this.timers.delete(scope);
    if (!next || this.stopped) return;
    // A few ms late rather than early: at the instant itself the decision is due.
    const delay = Math.min(next.getTime() - now.getTime() + 5, MAX_TIMER_MS);
    const timer = setTimeout(() => void this.runScope(scope), Math.max(delay, 0));
    timer.unref();
    this.timers.set(scope, timer);
  }

  /** Stops the cron jobs and timers and waits for runs in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopTimers();
    await Promise.all([...this.running.values(), ...this.jobRuns.values()]);
  }
}
