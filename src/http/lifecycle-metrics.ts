import { Counter, Gauge, Registry } from 'prom-client';
import type { Keywarden, OrphanScanReport, Readiness, ReconcileReport, ScopeOverviewRow } from '../lifecycle';
import type { ScopeStatus } from '../policy/scope-status';

/** What the scheduler tells the metrics (structurally its SchedulerHooks). */
export interface LifecycleMetricHooks {
  onReport(report: ReconcileReport, durationMs: number): void;
  onFailure(scope: string, error: Error): void;
  onSkipped(scope: string): void;
  onOrphanScan(report: OrphanScanReport): void;
}

/** A scrape waits at most this long for the store (the audit chain length), then goes without it. */
const STORE_TIMEOUT_MS = 3000;

/**
 * The key lifecycle's Prometheus metrics (docs/operations.md), for the process that runs the
 * scheduler: `serve` with one process, the cluster primary with `--workers N`. In a registry of
 * their own, next to (never inside) the token service's, so the cluster primary can add them to
 * its workers' sum without a name appearing twice.
 *
 * The per-scope gauges are computed when scraped, from the key cache and the lifecycle clock, so
 * they are exact at scrape time and cost no store query; reconcile outcomes arrive through the
 * scheduler's hooks (`schedulerHooks()`). A failure while collecting is logged and leaves out the
 * series it concerns; it never fails the scrape.
 */
export class LifecycleMetrics {
  readonly registry = new Registry();
  private readonly lastSuccess: Gauge<'scope'>;
  private readonly failures: Counter<'scope'>;
  private readonly reconciles: Counter<'outcome'>;
  private readonly orphans: Gauge<'backend'>;
  private readonly activeFor: Gauge<'scope'>;
  private overviewOfThisScrape: ScopeOverviewRow[] | null = null;
  private readinessOfThisScrape: Promise<Readiness> | null = null;

  constructor(private kw: Keywarden) {
    const registers = [this.registry];
    this.scopeGauge(
      'keywarden_scope_has_active_key',
      '1 if a key of the scope signs now, else 0 (alert on 0: the scope cannot sign)',
      (s) => (s.hasActiveKey ? 1 : 0),
    );
    this.scopeGauge(
      'keywarden_active_key_age_seconds',
      'Seconds since the signing key of the scope activated (absent without one)',
      (s) => s.activeKeyAgeSeconds,
    );
    this.scopeGauge(
      'keywarden_active_key_retirement_seconds',
      'Seconds until the signing key of the scope retires (absent without one)',
      (s) => s.activeKeyRetiresInSeconds,
    );
    this.scopeGauge(
      'keywarden_next_rotation_seconds',
      'Seconds until reconcile is due to create the next key; negative: overdue (absent without a signing key)',
      (s) => s.nextRotationInSeconds,
    );
    this.scopeGauge(
      'keywarden_published_keys',
      'Keys in the JWKS of the scope now (pending, active, retired)',
      (s) => s.publishedKeys,
    );
    const overview = () => this.overview();
    const log = kw.log;
    new Gauge({
      name: 'keywarden_scope_keys',
      help:
        'Keys of the scope by state now: active (the one signing key, 0 or 1), superseded (inside its ' +
        'active window but a newer key signs; verifies only), pending, retired, expired, revoked',
      labelNames: ['scope', 'state'],
      registers,
      collect() {
        this.reset();
        try {
          for (const row of overview())
            for (const [state, n] of Object.entries(row.status.keysByState))
              this.set({ scope: row.scope, state }, n);
        } catch (e) {
          this.reset();
          log.warn(
            { err: (e as Error).message, metric: 'keywarden_scope_keys' },
            'metrics: cannot compute scope status',
          );
        }
      },
    });
    // Static, from the config: lets one alert rule compare every scope's key age with its own policy.
    this.activeFor = new Gauge({
      name: 'keywarden_scope_active_for_seconds',
      help: 'The scope policy activeFor: how long each key signs, seconds',
      labelNames: ['scope'],
      registers,
    });
    for (const s of kw.config.scopes) this.activeFor.set({ scope: s.name }, s.policy.activeForSeconds);
    this.lastSuccess = new Gauge({
      name: 'keywarden_last_reconcile_success_timestamp_seconds',
      help: 'Unix time of the last reconcile of the scope by this process that ran and had no error',
      labelNames: ['scope'],
      registers,
    });
    this.failures = new Counter({
      name: 'keywarden_reconcile_failures_total',
      help: 'Failed reconcile actions (or whole passes) of the scope in this process',
      labelNames: ['scope'],
      registers,
    });
    // Zero from the start, so increase() sees the first failure and absence means "not exported".
    for (const s of kw.config.scopes) this.failures.inc({ scope: s.name }, 0);
    // No scope label: with 100,000 scopes that would be 200,000 series for a rate.
    this.reconciles = new Counter({
      name: 'keywarden_reconciles_total',
      help:
        'Scope reconciles the scheduler started: outcome "run" (the full reconcile, under the scope lock) or ' +
        '"skipped" (nothing due, decided from the key cache without the lock or the store)',
      labelNames: ['outcome'],
      registers,
    });
    this.reconciles.inc({ outcome: 'run' }, 0);
    this.reconciles.inc({ outcome: 'skipped' }, 0);
    this.orphans = new Gauge({
      name: 'keywarden_backend_orphan_objects',
      help: 'Backend objects with the keywarden label and no key row, as of the last successful orphan scan',
      labelNames: ['backend'],
      registers,
    });
    const integrity = () => this.kw.integrityReport();
    new Gauge({
      name: 'keywarden_key_rows_refused',
      help:
        'Key rows of the scope the integrity check refuses (never published, signed with or trusted), by ' +
        'reason; absent when none (alert on > 0: someone wrote the store, see docs/security-model.md)',
      labelNames: ['scope', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const r of integrity()?.refused ?? []) this.inc({ scope: r.scope, reason: r.reason });
      },
    });
    const backendNames = Object.keys(kw.config.backends);
    new Gauge({
      name: 'keywarden_key_rows_missing',
      help: 'Keys the backend holds with a keywarden label whose store row is gone (a deleted row, or an old backup)',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        const report = integrity();
        if (!report) return;
        for (const b of backendNames) this.set({ backend: b }, 0);
        for (const m of report.missingRows) this.inc({ backend: m.backend });
      },
    });
    const chainLength = () => this.kw.auditChainLength();
    const readiness = () => this.readiness();
    new Gauge({
      name: 'keywarden_scope_can_sign',
      help:
        '1 if the scope can sign now (an active key, a healthy backend, signatures not failing, key generation ' +
        'not failing again and again), else 0; /readyz names the reason (alert on 0)',
      labelNames: ['scope'],
      registers,
      async collect() {
        this.reset();
        try {
          for (const s of (await readiness()).scopes) this.set({ scope: s.scope }, s.ok ? 1 : 0);
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'metrics: cannot compute readiness');
        }
      },
    });
    new Gauge({
      name: 'keywarden_ready',
      help: '1 if /readyz of this process answers 200, else 0, by check (store, store-write, backend:<name>, scopes, keys)',
      labelNames: ['check'],
      registers,
      async collect() {
        this.reset();
        try {
          for (const [check, c] of Object.entries((await readiness()).checks)) {
            // One series per scope is keywarden_scope_can_sign's job; `scopes` sums them up here.
            if (!check.startsWith('scope:')) this.set({ check }, c.ok ? 1 : 0);
          }
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'metrics: cannot compute readiness');
        }
      },
    });
    new Gauge({
      name: 'keywarden_audit_chain_length',
      help: 'Records in the audit hash chain (a pruned prefix not counted; absent when the store cannot be read)',
      registers,
      async collect() {
        try {
          this.set(await withTimeout(chainLength(), STORE_TIMEOUT_MS));
        } catch (e) {
          // remove() with no labels drops the series: better absent than a made-up 0.
          this.remove();
          log.warn({ err: (e as Error).message }, 'metrics: cannot read the audit chain length');
        }
      },
    });
  }

  /**
   * After a reload (SIGHUP): reads `kw` (the new config's facade) from now on; a removed scope's
   * series go, an added scope's start (its failure counter at 0), activeFor follows the policy.
   */
  reconfigure(kw: Keywarden): void {
    const before = new Set(this.kw.config.scopes.map((s) => s.name));
    const after = new Set(kw.config.scopes.map((s) => s.name));
    this.kw = kw;
    for (const name of before) {
      if (after.has(name)) continue;
      this.activeFor.remove({ scope: name });
      this.failures.remove({ scope: name });
      this.lastSuccess.remove({ scope: name });
    }
    for (const s of kw.config.scopes) {
      this.activeFor.set({ scope: s.name }, s.policy.activeForSeconds);
      if (!before.has(s.name)) this.failures.inc({ scope: s.name }, 0);
    }
  }

  /**
   * Readiness, computed once per scrape (the two gauges above share it) and bounded in time: prom-client
   * calls every collect in one synchronous loop, so a promise kept until the next microtask serves both.
   */
  private readiness(): Promise<Readiness> {
    if (!this.readinessOfThisScrape) {
      this.readinessOfThisScrape = withTimeout(this.kw.readiness(), STORE_TIMEOUT_MS);
      queueMicrotask(() => (this.readinessOfThisScrape = null));
    }
    return this.readinessOfThisScrape;
  }

  /** Hooks for the Scheduler: reconcile outcomes and orphan scans feed the counters and gauges. */
  schedulerHooks(): LifecycleMetricHooks {
    return {
      onReport: (report: ReconcileReport) => {
        this.reconciles.inc({ outcome: 'run' });
        // A pass skipped because another process held the scope lock is not a success here.
        if (report.ran && report.errors.length === 0) {
          this.lastSuccess.set({ scope: report.scope }, this.kw.clock.now().getTime() / 1000);
        }
      },
      onFailure: (scope: string) => this.failures.inc({ scope }),
      // The scope was found in order (what a full reconcile with nothing to do concludes): a success.
      onSkipped: (scope: string) => {
        this.reconciles.inc({ outcome: 'skipped' });
        this.lastSuccess.set({ scope }, this.kw.clock.now().getTime() / 1000);
      },
      onOrphanScan: (report: OrphanScanReport) => {
        // A backend that could not be listed keeps its last known count (the scan logged why).
        if (report.error === undefined) this.orphans.set({ backend: report.backend }, report.orphans.length);
      },
    };
  }

  /** A gauge per scope whose value `pick` takes from the scope's status at scrape time (null: absent). */
  private scopeGauge(name: string, help: string, pick: (s: ScopeStatus) => number | null): void {
    const overview = () => this.overview();
    const log = this.kw.log;
    new Gauge({
      name,
      help,
      labelNames: ['scope'],
      registers: [this.registry],
      collect() {
        this.reset();
        try {
          for (const row of overview()) {
            const v = pick(row.status);
            if (v !== null) this.set({ scope: row.scope }, v);
          }
        } catch (e) {
          this.reset();
          log.warn({ err: (e as Error).message, metric: name }, 'metrics: cannot compute scope status');
        }
      },
    });
  }

  /**
   * Every scope's status, computed once per scrape: prom-client calls every metric's collect in
   * one synchronous loop, so a result kept until the next microtask serves all the scope gauges
   * of that scrape (with thousands of scopes, computing it per gauge would be five times the work)
   * and the next scrape computes afresh.
   */
  private overview(): ScopeOverviewRow[] {
    if (!this.overviewOfThisScrape) {
      this.overviewOfThisScrape = this.kw.scopesOverview();
      queueMicrotask(() => (this.overviewOfThisScrape = null));
    }
    return this.overviewOfThisScrape;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the store in ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
