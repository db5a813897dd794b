import { randomInt } from 'node:crypto';
import { CronJob } from 'cron';
import type { Keywarden, PeriodicJob, ReconcileReport } from '../lifecycle';
import { ReconcileQueue, type ReconcilePriority } from './reconcile-queue';

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
 *
 * At most `scheduler.concurrency` reconciles run at once (ReconcileQueue), due ones (decision
 * instants, start-up, reload) ahead of cron heartbeats. Start-up and every cron tick take their
 * scopes in a random order: daemons started together (or sharing a schedule) then work on
 * different scopes instead of queueing on the same scope locks in the same order.
 */
export class Scheduler {
  private cronJobs: CronJob[] = [];
  private readonly queue: ReconcileQueue;
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
    this.queue = new ReconcileQueue(kw.config.scheduler.concurrency, (scope) => this.runOnce(scope));
  }

  /**
   * Runs every scope once now, then starts the cron jobs and the periodic jobs (those marked
   * `atStart` right away, in the background: an orphan scan lists every backend and must not
   * delay serving).
   */
  async start(): Promise<void> {
    await Promise.all(shuffled(this.kw.config.scopes.map((s) => s.name)).map((n) => this.runScope(n)));
    this.startTimers(true);
  }

  private startTimers(runJobsAtStart: boolean): void {
    for (const job of this.jobs) {
      if (runJobsAtStart && job.atStart) void this.runJob(job);
      const t = setInterval(() => void this.runJob(job), job.everyMs);
      t.unref();
      this.jobTimers.push(t);
    }
    // One cron job per distinct schedule, not per scope: 100,000 tenant scopes on one schedule
    // are one timer whose tick queues them all.
    const bySchedule = new Map<string, string[]>();
    for (const s of this.kw.config.scopes) {
      const names = bySchedule.get(s.schedule);
      if (names) names.push(s.name);
      else bySchedule.set(s.schedule, [s.name]);
    }
    for (const [schedule, names] of bySchedule) {
      this.cronJobs.push(
        CronJob.from({
          cronTime: schedule,
          onTick: () => {
            for (const n of shuffled(names)) void this.runScope(n, 'heartbeat');
          },
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
    // Queued heartbeats are dropped (the new config's ticks and timers take over); runs in
    // progress finish on the old facade.
    this.queue.clear();
    await this.queue.idle();
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

  /**
   * Queues one scope's reconcile (at most `scheduler.concurrency` run at once) unless one is queued
   * already; with one in progress, one more follows it. Resolves when it ran. Never rejects.
   */
  runScope(scope: string, priority: ReconcilePriority = 'due'): Promise<void> {
    return this.queue.enqueue(scope, priority);
  }

  /** Reconciles one scope now (the queue's slot), then arms its decision timer. Never rejects. */
  private runOnce(scope: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
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
      .then(() => this.armTimer(scope))
      .catch((e: Error) => this.kw.log.error({ scope, err: e.message }, 'cannot schedule next reconcile'));
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
    this.queue.clear();
    await Promise.all([this.queue.idle(), ...this.jobRuns.values()]);
  }
}

/** A copy in random order (Fisher-Yates). */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
