import cluster, { type Worker } from 'node:cluster';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { KeywardenError } from '../policy/errors';
import {
  CONFIG_REQUEST,
  CONFIG_REPLY,
  RELOAD,
  RELOAD_RESULT,
  WORKER_LISTEN_FAILED,
  WORKER_READY,
  isMessage,
  type ConfigReply,
  type ConfigRequest,
  type ConfigText,
  type Reload,
  type ReloadResult,
  type WorkerListenFailed,
  type WorkerReady,
} from './config-channel';
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
  /** The running config, which every worker gets at start (and on reloadWorkers). */
  config: () => ConfigText;
  /** How long a worker may take to apply a reload before it is replaced. Default 60 s. */
  reloadTimeoutMs?: number;
}

/** One worker's answer to a reload. */
export interface WorkerReloadResult {
  slot: number;
  ok: boolean;
  error?: string;
}

interface Slot {
  worker: Worker | null;
  /** The config version the worker serves, once it listens; null before. */
  version: number | null;
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
  /** Reloads sent to a worker and not answered yet (it answers each, in order). */
  private readonly reloadWaiters = new Map<
    Worker,
    { version: number; settle: (r: ReloadResult) => void }[]
  >();
  private startup: { resolve: () => void; reject: (e: Error) => void } | null = null;

  constructor(private readonly o: SupervisorOptions) {}

  /**
   * Forks every worker. Resolves once each listens (a worker that crashes first is restarted as
   * ever, and waited for); rejects with LISTEN_FAILED as soon as one cannot listen on the address,
   * having stopped them all: the daemon must not claim to serve, nor crash-loop, on a busy port.
   */
  start(): Promise<void> {
    const started = new Promise<void>((resolve, reject) => (this.startup = { resolve, reject }));
    for (let slot = 1; slot <= this.o.workers; slot++) {
      this.slots.set(slot, {
        worker: null,
        version: null,
        startedAt: 0,
        backoff: new RestartBackoff(this.o.backoff),
        restartTimer: null,
      });
      this.fork(slot);
    }
    return started;
  }

  /**
   * Tells every listening worker to apply the running config (`config()`, after a reload) and
   * waits for each answer. A worker that refuses, fails or does not answer in time is replaced:
   * SIGTERM (it drains) and a restart, which fetches the running config. A worker still starting
   * gets the new config when it reports ready with an older one.
   */
  async reloadWorkers(): Promise<WorkerReloadResult[]> {
    const results: WorkerReloadResult[] = [];
    await Promise.all(
      [...this.slots].map(async ([slot, s]) => {
        const w = s.worker;
        if (!w || w.isDead() || s.version === null) return;
        const r = await this.reloadOne(w);
        if (r.ok) s.version = r.version;
        else {
          this.o.log.error(
            { slot, workerPid: w.process.pid, err: r.error },
            'worker could not reload; replacing it',
          );
          w.process.kill('SIGTERM');
        }
        results.push({ slot, ok: r.ok, ...(r.error !== undefined ? { error: r.error } : {}) });
      }),
    );
    return results.sort((a, b) => a.slot - b.slot);
  }

  private reloadOne(w: Worker): Promise<ReloadResult> {
    const config = this.o.config();
    return new Promise((resolve) => {
      const waiters = this.reloadWaiters.get(w) ?? [];
      this.reloadWaiters.set(w, waiters);
      const settle = (r: ReloadResult) => {
        clearTimeout(timer);
        w.off('exit', onExit);
        const i = waiters.indexOf(waiter);
        if (i >= 0) waiters.splice(i, 1);
        if (waiters.length === 0) this.reloadWaiters.delete(w);
        resolve(r);
      };
      const waiter = { version: config.version, settle };
      const failed = (error: string) =>
        settle({ type: RELOAD_RESULT, version: config.version, ok: false, error });
      const onExit = () => failed('exited');
      const timer = setTimeout(() => failed('no answer in time'), this.o.reloadTimeoutMs ?? 60_000);
      w.once('exit', onExit);
      waiters.push(waiter);
      w.send({ type: RELOAD, ...config } satisfies Reload);
    });
  }

  private onMessage(slot: number, worker: Worker, m: unknown): void {
    const s = this.slots.get(slot);
    if (!s || s.worker !== worker) return;
    if (isMessage<ConfigRequest>(m, CONFIG_REQUEST)) {
      if (worker.isConnected()) worker.send({ type: CONFIG_REPLY, ...this.o.config() } satisfies ConfigReply);
    } else if (isMessage<WorkerReady>(m, WORKER_READY)) {
      s.version = m.version;
      if (this.slotsReady()) {
        this.startup?.resolve();
        this.startup = null;
      }
      // It fetched the config before a reload that it then missed: bring it up to date.
      if (m.version < this.o.config().version) void this.reloadWorkerInSlot(slot, worker);
    } else if (isMessage<WorkerListenFailed>(m, WORKER_LISTEN_FAILED)) {
      this.o.log.error({ slot, workerPid: worker.process.pid, err: m.message }, 'worker cannot listen');
      if (this.startup) {
        const failed = this.startup;
        this.startup = null;
        void this.stop().then(() => failed.reject(new KeywardenError('LISTEN_FAILED', m.message)));
      }
    } else if (isMessage<ReloadResult>(m, RELOAD_RESULT)) {
      this.reloadWaiters
        .get(worker)
        ?.find((w) => w.version === m.version)
        ?.settle(m);
    }
  }

  private async reloadWorkerInSlot(slot: number, worker: Worker): Promise<void> {
    const r = await this.reloadOne(worker);
    const s = this.slots.get(slot);
    if (r.ok && s?.worker === worker) s.version = r.version;
    else if (!r.ok) {
      this.o.log.error(
        { slot, workerPid: worker.process.pid, err: r.error },
        'worker could not reload; replacing it',
      );
      worker.process.kill('SIGTERM');
    }
  }

  private slotsReady(): boolean {
    return [...this.slots.values()].every((s) => s.version !== null);
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
    worker.on('message', (m: unknown) => this.onMessage(slot, worker, m));
    worker.on('exit', (code, signal) => this.onExit(slot, worker, code, signal));
  }

  private onExit(slot: number, worker: Worker, code: number | null, signal: string | null): void {
    const s = this.slots.get(slot);
    if (!s || s.worker !== worker) return;
    s.worker = null;
    s.version = null;
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
    if (this.stopping) return this.stopped ?? true;
    this.stopping = true;
    this.stopped = this.stopWorkers();
    return this.stopped;
  }

  private stopped: Promise<boolean> | null = null;

  private async stopWorkers(): Promise<boolean> {
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
