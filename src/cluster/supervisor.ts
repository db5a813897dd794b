import cluster, { type Worker } from 'node:cluster';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { RestartBackoff, type RestartBackoffOptions } from './restart-backoff';
import { WORKER_SLOT_ENV } from './worker-identity';

export interface SupervisorOptions {
  /** How many worker processes to keep running. */
  workers: number;
  log: Logger;
  /** Extra environment for every worker (e.g. UV_THREADPOOL_SIZE). */
  env?: Record<string, string>;
  backoff?: Partial<RestartBackoffOptions>;
  /** How long SIGTERM'd workers may take to finish in-flight requests before SIGKILL. Default 30 s. */
  drainTimeoutMs?: number;
}

interface Slot {
  worker: Worker | null;
  startedAt: number;
  backoff: RestartBackoff;
  restartTimer: NodeJS.Timeout | null;
}

/**
 * The primary's side of `serve --workers N`: forks N workers (node:cluster, so they share the
 * listening port), restarts a worker that dies (after a RestartBackoff delay, never in a tight
 * loop), and on stop() asks every worker to drain (SIGTERM: each finishes its in-flight
 * requests and exits) and waits for them. Workers are identified by a stable slot 1..N.
 */
export class WorkerSupervisor {
  private readonly slots = new Map<number, Slot>();
  private stopping = false;
  private exitWaiters: (() => void)[] = [];

  constructor(private readonly o: SupervisorOptions) {}

  /** Forks every worker. */
  start(): void {
    for (let slot = 1; slot <= this.o.workers; slot++) {
      this.slots.set(slot, {
        worker: null,
        startedAt: 0,
        backoff: new RestartBackoff(this.o.backoff),
        restartTimer: null,
      });
      this.fork(slot);
    }
  }

  /** The pids of the workers alive now, by slot. */
  pids(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [slot, s] of this.slots) {
      const pid = s.worker?.process.pid;
      if (pid !== undefined && s.worker?.isDead() === false) out.set(slot, pid);
    }
    return out;
  }

  private fork(slot: number): void {
    const s = this.slots.get(slot);
    if (!s || this.stopping) return;
    s.restartTimer = null;
    const worker = cluster.fork({ ...this.o.env, [WORKER_SLOT_ENV]: String(slot) });
    s.worker = worker;
    s.startedAt = performance.now();
    const workerPid = worker.process.pid;
    worker.on('online', () => this.o.log.info({ slot, workerPid }, 'worker started'));
    worker.on('listening', (address) =>
      this.o.log.info({ slot, workerPid, port: address.port }, 'worker listening'),
    );
    // A worker's IPC channel can fail (e.g. EPIPE while it dies); the exit event follows.
    worker.on('error', (e) => this.o.log.warn({ slot, workerPid, err: e.message }, 'worker channel error'));
    worker.on('exit', (code, signal) => this.onExit(slot, worker, code, signal));
  }

  private onExit(slot: number, worker: Worker, code: number | null, signal: string | null): void {
    const s = this.slots.get(slot);
    if (!s || s.worker !== worker) return;
    s.worker = null;
    const workerPid = worker.process.pid;
    if (this.stopping) {
      this.o.log.info({ slot, workerPid, code, signal }, 'worker stopped');
      this.notifyExit();
      return;
    }
    const uptimeMs = performance.now() - s.startedAt;
    const delayMs = s.backoff.next(uptimeMs);
    this.o.log.error(
      {
        slot,
        workerPid,
        code,
        signal,
        uptimeMs: Math.round(uptimeMs),
        restartInMs: delayMs,
        crashesInRow: s.backoff.crashes,
      },
      'worker exited; restarting it',
    );
    s.restartTimer = setTimeout(() => this.fork(slot), delayMs);
  }

  private notifyExit(): void {
    for (const w of this.exitWaiters.splice(0)) w();
  }

  private live(): Worker[] {
    const out: Worker[] = [];
    for (const s of this.slots.values()) if (s.worker && !s.worker.isDead()) out.push(s.worker);
    return out;
  }

  /**
   * Stops restarting, sends SIGTERM to every worker (each drains: finishes its in-flight
   * requests, then exits) and waits. Workers still alive after drainTimeoutMs get SIGKILL.
   * Resolves true when every worker drained in time.
   */
  async stop(): Promise<boolean> {
    this.stopping = true;
    for (const s of this.slots.values()) {
      if (s.restartTimer) clearTimeout(s.restartTimer);
      s.restartTimer = null;
    }
    for (const w of this.live()) w.process.kill('SIGTERM');
    const deadline = performance.now() + (this.o.drainTimeoutMs ?? 30_000);
    while (this.live().length > 0) {
      const left = deadline - performance.now();
      if (left <= 0) {
        const stuck = this.live();
        this.o.log.error(
          { workers: stuck.map((w) => w.process.pid) },
          'workers did not drain in time; killing them',
        );
        for (const w of stuck) w.process.kill('SIGKILL');
        await Promise.all(
          stuck.map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r())))),
        );
        return false;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.exitWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }
}
