/** Tuning of RestartBackoff; all in milliseconds. */
export interface RestartBackoffOptions {
  /** Delay before restarting a worker that crashed after a stable run. Default 500. */
  initialMs: number;
  /** Ceiling of the delay however often a worker keeps crashing. Default 30,000. */
  maxMs: number;
  /** A worker that ran at least this long counts as healthy: its crash starts over at initialMs. Default 30,000. */
  stableAfterMs: number;
}

export const DEFAULT_RESTART_BACKOFF: RestartBackoffOptions = {
  initialMs: 500,
  maxMs: 30_000,
  stableAfterMs: 30_000,
};

/**
 * When to restart a crashed worker. A worker that dies soon after it started (a bad PIN, a
 * missing token, a store that refuses connections) would otherwise be restarted in a tight
 * loop that burns both cores and floods the log; each quick crash in a row doubles the delay
 * up to `maxMs`. A worker that ran for `stableAfterMs` resets the count, so one crash after a
 * long healthy run is restarted almost at once.
 */
export class RestartBackoff {
  private readonly o: RestartBackoffOptions;
  private crashesInRow = 0;

  constructor(options: Partial<RestartBackoffOptions> = {}) {
    this.o = { ...DEFAULT_RESTART_BACKOFF, ...options };
  }

  /** Records a crash of a worker that had run `uptimeMs` and returns the delay before its restart. */
  next(uptimeMs: number): number {
    if (uptimeMs >= this.o.stableAfterMs) this.crashesInRow = 0;
    this.crashesInRow += 1;
    // 2 ** 30 is far past any ceiling; capping the exponent keeps the arithmetic finite.
    const delay = this.o.initialMs * 2 ** Math.min(this.crashesInRow - 1, 30);
    return Math.min(delay, this.o.maxMs);
  }

  /** Quick crashes in a row so far (for logs). */
  get crashes(): number {
    return this.crashesInRow;
  }
}
