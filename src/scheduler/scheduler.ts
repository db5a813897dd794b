import { randomInt } from 'node:crypto';
import { CronJob } from 'cron';
import type { Keywarden, PeriodicJob, ReconcileReport, ReconcileVerdict } from '../lifecycle';
import { ReconcileQueue, type ReconcilePriority } from './reconcile-queue';

/** setTimeout's ceiling; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Scopes a pass checks between two turns of the event loop: 100,000 in-memory checks in one go
 * would hold the loop (and every JWKS and sign request) for a few hundred milliseconds.
 */
const CHECKS_PER_TURN = 500;

export interface SchedulerHooks {
  onReport?(report: ReconcileReport, durationMs: number): void;
  onFailure?(scope: string, error: Error): void;
  /** A pass found, in memory, nothing due for the scope: its full reconcile was skipped. */
  onSkipped?(scope: string): void;
}

/** What one pass over scopes (start-up, a cron tick) did. */
export interface PassCounts {
  checked: number;
  /** Nothing due in memory: no lock, no store. */
  skipped: number;
  /** Queued for the full reconcile. */
  queued: number;
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
 *
 * Start-up and cron ticks first ask, in memory, whether a scope has anything to do
 * (Keywarden.reconcileVerdict, after one key reload per pass if the store changed): only scopes
 * with something due, or about which this process is unsure, take the scope lock and read the
 * store. A decision timer always runs the full reconcile.
 */
export class Scheduler {
  private cronJobs: CronJob[] = [];
  private readonly queue: ReconcileQueue;
  /** Each scope's decision timer and the instant it is armed for. */
  private timers = new Map<string, { timer: NodeJS.Timeout; at: number }>();
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
    const started = Date.now();
    const counts = await this.pass(shuffled(this.kw.config.scopes.map((s) => s.name)), 'due');
    this.kw.log.info({ ...counts, ms: Date.now() - started }, 'start-up reconcile pass done');
    this.startTimers(true);
  }

  /**
   * Checks each scope in memory and queues the full reconcile of those with something due (or
   * uncertain); a skipped scope's decision timer is re-armed from the cache if its instant moved.
   * Resolves when the queued reconciles ran. Never rejects. Public for the benchmark (bench/scale.ts).
   */
  async pass(names: readonly string[], priority: ReconcilePriority): Promise<PassCounts> {
    const kw = this.kw;
    const counts: PassCounts = { checked: 0, skipped: 0, queued: 0 };
    let inMemory = true;
    try {
      await kw.prepareReconcileChecks();
    } catch (e) {
      // Without a current view of the store nothing can be skipped: every scope runs in full.
      kw.log.error(
        { err: (e as Error).message },
        'cannot refresh keys for a reconcile pass: reconciling every scope',
      );
      inMemory = false;
    }
    const runs: Promise<void>[] = [];
    for (const name of names) {
      if (this.stopped || this.kw !== kw) break;
      if (counts.checked > 0 && counts.checked % CHECKS_PER_TURN === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.stopped || this.kw !== kw) break;
      }
      counts.checked++;
      const verdict = inMemory ? verdictOf(kw, name) : null;
      if (verdict && !verdict.due) {
        counts.skipped++;
        try {
          this.hooks.onSkipped?.(name);
        } catch (e) {
          kw.log.error({ scope: name, err: (e as Error).message }, 'scheduler hook failed');
        }
        this.armAt(name, verdict.nextDecisionAt);
      } else {
        counts.queued++;
        runs.push(this.runScope(name, priority));
      }
    }
    await Promise.all(runs);
    return counts;
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
            const started = Date.now();
            void this.pass(shuffled(names), 'heartbeat').then(
              (counts) =>
                this.kw.log.debug(
                  { schedule, ...counts, ms: Date.now() - started },
                  'reconcile heartbeat done',
                ),
              (e: Error) => this.kw.log.error({ schedule, err: e.message }, 'reconcile heartbeat failed'),
            );
          },
          start: true,
          utcOffset: 0,
        }),
      );
    }
  }

  private async stopTimers(): Promise<void> {
    for (const t of this.timers.values()) clearTimeout(t.timer);
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
    const runs = kw.config.scopes.filter((s) => now.has(s.name)).map((s) => this.runScope(s.name));
    // Every other scope's timer from the new facade's key cache (one load), in chunks: asking the
    // store for each of 100,000 scopes at once was 100,000 promises and queries on every reload.
    const inMemory = await kw.prepareReconcileChecks().then(
      () => true,
      (e: Error) => {
        kw.log.error(
          { err: e.message },
          'cannot load keys to re-arm decision timers: asking the store per scope',
        );
        return false;
      },
    );
    let checked = 0;
    for (const s of kw.config.scopes) {
      if (this.stopped) break;
      if (now.has(s.name)) continue;
      if (++checked % CHECKS_PER_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const verdict = inMemory ? verdictOf(kw, s.name) : null;
      if (verdict && !verdict.due) this.armAt(s.name, verdict.nextDecisionAt);
      else {
        // Uncertain in memory: the store says when (one scope at a time; these are few).
        await this.armTimer(s.name).catch((e: Error) =>
          kw.log.error({ scope: s.name, err: e.message }, 'cannot schedule next reconcile'),
        );
      }
    }
    await Promise.all(runs);
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

  /** Arms a one-shot timer for the scope's next decision instant, read from the store. */
  private async armTimer(scope: string): Promise<void> {
    if (this.stopped) return;
    const next = await this.kw.nextDecisionAt(scope);
    this.armAt(scope, next, true);
  }

  /**
   * Arms the scope's decision timer for `next` (none when null), replacing an earlier one unless it
   * is armed for the same instant already and `rearm` is false (a heartbeat that skipped the scope
   * leaves its timer alone when nothing moved).
   */
  private armAt(scope: string, next: Date | null, rearm = false): void {
    if (this.stopped) return;
    const armed = this.timers.get(scope);
    if (armed && !rearm && next?.getTime() === armed.at) return;
    clearTimeout(armed?.timer);
    this.timers.delete(scope);
    if (!next) return;
    // A few ms late rather than early: at the instant itself the decision is due.
    const delay = Math.min(next.getTime() - this.kw.clock.now().getTime() + 5, MAX_TIMER_MS);
    const timer = setTimeout(() => void this.runScope(scope), Math.max(delay, 0));
    timer.unref();
    this.timers.set(scope, { timer, at: next.getTime() });
  }

  /** Stops the cron jobs and timers and waits for runs in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopTimers();
    this.queue.clear();
    await Promise.all([this.queue.idle(), ...this.jobRuns.values()]);
  }
}

/** The in-memory verdict, or null (run it in full) if the check itself failed. */
function verdictOf(kw: Keywarden, scope: string): ReconcileVerdict | null {
  try {
    return kw.reconcileVerdict(scope);
  } catch (e) {
    kw.log.error(
      { scope, err: (e as Error).message },
      'in-memory reconcile check failed: reconciling in full',
    );
    return null;
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
