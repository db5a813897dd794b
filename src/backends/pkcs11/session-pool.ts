import { KeywardenError } from '../../policy/errors';
import { CkError, isCkr, SESSION_LOST_CKRS, toKeywardenError } from './ck-error';
import type { Cryptoki, Handle } from './cryptoki';

interface Lease {
  session: Handle;
  generation: number;
}

interface Waiter {
  resolve(lease: Lease): void;
  reject(e: unknown): void;
}

/**
 * A fixed set of logged-in sessions on one token, each used by one operation at a time (a
 * PKCS#11 session runs one operation; C_SignInit..C_Sign must not interleave). When the token
 * reports the login or the sessions gone, the pool re-opens them, logs in once more and the
 * operation is retried once.
 */
export class SessionPool {
  private idle: Handle[] = [];
  private waiters: Waiter[] = [];
  private generation = 0;
  private slot: Handle | null = null;
  private recovering: Promise<void> | null = null;
  private broken = true;
  private closed = false;
  /** Leases handed out and not yet returned. */
  private busy = 0;
  private onIdle: (() => void) | null = null;

  constructor(
    private readonly ck: Cryptoki,
    private readonly tokenLabel: string,
    private readonly size: number,
    /** Logs the user in; a closure so the PIN is not a property anyone can inspect or log. */
    private readonly login: (slot: Handle, session: Handle) => void,
    /** Called after sessions were (re-)established: cached object handles may be stale. */
    private readonly onReset: (generation: number) => void,
  ) {}

  /** Finds the token, opens the sessions and logs in. */
  start(): Promise<void> {
    return this.recover(this.generation);
  }

  /** The slot holding the token (after start). */
  get currentSlot(): Handle | null {
    return this.slot;
  }

  /**
   * Runs `fn` with a session of its own. If the token says the session or login is gone, the pool
   * recovers and `fn` runs once more on a fresh session.
   */
  async use<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      const lease = await this.acquire();
      try {
        const out = await fn(lease.session);
        this.release(lease);
        return out;
      } catch (e) {
        this.release(lease);
        if (attempt > 0 || !isCkr(e, ...SESSION_LOST_CKRS)) throw e;
        await this.recover(lease.generation);
      }
    }
  }

  /**
   * Refuses new work, waits for operations already on the token (finalising the module under a
   * running C_Sign can crash the process), then logs out (when no other backend in this process
   * uses the token) and closes every session.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
    for (const w of this.waiters.splice(0)) w.reject(err);
    if (this.busy > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
    this.teardown(true);
  }

  /** Every lease handed out is counted in `busy`, by whoever hands it out. */
  private async acquire(): Promise<Lease> {
    if (this.closed) throw new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
    if (this.broken) await this.recover(this.generation);
    const session = this.idle.pop();
    if (!session) return new Promise<Lease>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.busy += 1;
    return { session, generation: this.generation };
  }

  private release(lease: Lease): void {
    this.busy -= 1;
    if (lease.generation !== this.generation) {
      // A session from before a recovery: the token has most likely dropped it already.
      this.quietClose(lease.session);
    } else {
      const next = this.closed ? undefined : this.waiters.shift();
      if (next) {
        this.busy += 1;
        next.resolve(lease);
        return;
      }
      this.idle.push(lease.session);
    }
    if (this.closed && this.busy === 0) this.onIdle?.();
  }

  /** One recovery at a time; callers that failed on an older generation just retry. */
  private recover(failedGeneration: number): Promise<void> {
    if (this.recovering) return this.recovering;
    if (failedGeneration !== this.generation && !this.broken) return Promise.resolve();
    this.recovering = Promise.resolve()
      .then(() => this.reopen())
      .finally(() => {
        this.recovering = null;
      });
    return this.recovering;
  }

  private reopen(): void {
    if (this.closed) throw new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
    this.teardown(false);
    this.generation += 1;
    this.broken = true;
    try {
      const slot = this.ck.findTokenSlot(this.tokenLabel);
      if (!slot) {
        throw new KeywardenError(
          'BACKEND_TOKEN_NOT_FOUND',
          `PKCS#11: no token labelled '${this.tokenLabel}' in module ${this.ck.modulePath}` +
            ' (initialise it, e.g. hsm/init-token.sh, or fix tokenLabel)',
        );
      }
      const sessions: Handle[] = [];
      try {
        for (let i = 0; i < this.size; i += 1) sessions.push(this.ck.openSession(slot));
        this.login(slot, sessions[0] as Handle);
      } catch (e) {
        for (const s of sessions) this.quietClose(s);
        throw e;
      }
      this.slot = slot;
      this.ck.retainSlot(slot);
      this.idle = sessions;
      this.broken = false;
      this.onReset(this.generation);
    } catch (e) {
      const ke = toKeywardenError(e, `opening sessions on token '${this.tokenLabel}'`);
      for (const w of this.waiters.splice(0)) w.reject(ke);
      throw ke;
    }
    for (;;) {
      const w = this.waiters.shift();
      const session = w && this.idle.pop();
      if (!w || !session) {
        if (w) this.waiters.unshift(w);
        break;
      }
      this.busy += 1;
      w.resolve({ session, generation: this.generation });
    }
  }

  /** Closes the idle sessions and gives back this pool's hold on the login. */
  private teardown(final: boolean): void {
    const sessions = this.idle.splice(0);
    if (this.slot) {
      this.ck.releaseSlot(this.slot, final ? sessions[0] : undefined);
      if (!final) this.slot = null;
    }
    for (const s of sessions) this.quietClose(s);
  }

  private quietClose(session: Handle): void {
    try {
      this.ck.closeSession(session);
    } catch (e) {
      // Already closed by the token (or by C_CloseAllSessions): nothing left to release.
      if (!(e instanceof CkError)) throw e;
    }
  }
}
