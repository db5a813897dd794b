import { Counter, Gauge, Registry } from 'prom-client';

/**
 * Config reloads (SIGHUP) as the scheduling process sees them (with `--workers N`: the primary,
 * which decides for every worker). Alert on `keywarden_config_last_reload_successful == 0`: the
 * file on disk is not what runs, and the next restart would fail or change more than expected.
 */
export class ReloadMetrics {
  readonly registry = new Registry();
  private readonly reloads: Counter<'result'>;
  private readonly lastSuccessful: Gauge;
  private readonly lastAt: Gauge;

  constructor() {
    const registers = [this.registry];
    this.reloads = new Counter({
      name: 'keywarden_config_reloads_total',
      help: 'Config reloads (SIGHUP) by result: applied, or refused (invalid file or a restart-only change)',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['applied', 'refused']) this.reloads.inc({ result }, 0);
    this.lastSuccessful = new Gauge({
      name: 'keywarden_config_last_reload_successful',
      help: '1 if the last reload applied the file (or none was asked since start), 0 if it was refused',
      registers,
    });
    this.lastSuccessful.set(1);
    this.lastAt = new Gauge({
      name: 'keywarden_config_last_reload_timestamp_seconds',
      help: 'Unix time of the last reload attempt (absent before the first)',
      registers,
    });
  }

  /** One reload, applied or refused, at `at`. */
  record(applied: boolean, at: Date): void {
    this.reloads.inc({ result: applied ? 'applied' : 'refused' });
    this.lastSuccessful.set(applied ? 1 : 0);
    this.lastAt.set(at.getTime() / 1000);
  }
}
