import { KeywardenError } from '../../policy/errors';
import { CkError, isCkr, isTokenFault, SESSION_FAULT_CKRS, toKeywardenError } from './ck-error';
import type { Cryptoki, Handle } from './cryptoki';

interface Lease {
  session: Handle;
  generation: number;
}

/** How quickly the pool tries the token again after a failed recovery. */
export interface RecoveryBackoff {
  /** Wait after the first failed recovery (ms); doubled per failure up to `maxDelayMs`. Default 250. */
  initialDelayMs?: number;
  /** Longest wait between two recoveries (ms). Default 2000: a token back is used within ~2 s. */
  maxDelayMs?: number;
  /** Milliseconds now (tests move it instead of sleeping). Default Date.now. */
  now?: () => number;
}

/** Whether the pool has working sessions, and since when and why not. */
export type PoolState =
  { ok: true } | { ok: false; since: Date; reason: string; failedRecoveries: number; nextAttemptAt: Date };

/**
 * A fixed set of logged-in sessions on one token, each used by one operation at a time (a
 * PKCS#11 session runs one operation; C_SignInit..C_Sign must not interleave).
 *
 * Failures heal without a restart:
 * - a session whose operation failed with a PKCS#11 error is closed and replaced, never reused
 *   (a failed C_Sign may leave the operation active, and every later C_SignInit on that session
 *   would answer CKR_OPERATION_ACTIVE); on CKR_OPERATION_ACTIVE the operation runs once more on a
 *   fresh session;
 * - when the token, the sessions or the login are gone (TOKEN_FAULT_CKRS, or a backend's token
 *   probe failed), every session is discarded, new ones are opened and the user logs in again;
 *   if that fails too, the module is re-initialised (C_Finalize + C_Initialize: SoftHSM2 and
 *   p11-kit's client need it after their token or server went away) and the operation is retried
 *   once;
 * - a recovery that fails leaves the pool broken: operations fail at once with
 *   BACKEND_UNAVAILABLE naming the reason, and the next operation after a back-off (doubling up to
 *   `maxDelayMs`) tries again, so the token is used again within that delay of coming back.
 */
export class SessionPool {
  private idle: Handle[] = [];
  /** Woken when a session is given back, the pool recovered or closed: they look again. */
  private waiters: (() => void)[] = [];
  private generation = 0;
  /** The module epoch the sessions were opened in (Cryptoki.epoch). */
  private epoch = 0;
  private slot: Handle | null = null;
  private recovering: Promise<void> | null = null;
  private broken = true;
  private closed = false;
  /** Leases handed out and not yet returned. */
  private busy = 0;
  private onIdle: (() => void) | null = null;
  /** True once sessions were opened at least once (a later "token not found" may be a glitch). */
  private everOpened = false;
  private failure: { since: number; reason: KeywardenError; count: number; nextAttemptAt: number } | null =
    null;
  private readonly backoff: Required<RecoveryBackoff>;

  constructor(
    private readonly ck: Cryptoki,
    private readonly tokenLabel: string,
    private readonly size: number,
    /** Logs the user in; a closure so the PIN is not a property anyone can inspect or log. */
    private readonly login: (slot: Handle, session: Handle) => void,
    /** Called after sessions were (re-)established: cached object handles may be stale. */
    private readonly onReset: (generation: number) => void,
    backoff: RecoveryBackoff = {},
  ) {
    this.backoff = {
      initialDelayMs: backoff.initialDelayMs ?? 250,
      maxDelayMs: backoff.maxDelayMs ?? 2000,
      now: backoff.now ?? Date.now,
    };
  }

  /** Finds the token, opens the sessions and logs in; throws what prevented it. */
  async start(): Promise<void> {
    await this.recover();
  }

  /** The slot holding the token (after start). */
  get currentSlot(): Handle | null {
    return this.slot;
  }

  /** Working, or broken since when and why (for health and readiness). */
  state(): PoolState {
    if (!this.failure) return { ok: true };
    return {
      ok: false,
      since: new Date(this.failure.since),
      reason: this.failure.reason.message,
      failedRecoveries: this.failure.count,
      nextAttemptAt: new Date(this.failure.nextAttemptAt),
    };
  }

  /**
   * Runs `fn` with a session of its own. A token fault makes the pool recover and `fn` run once
   * more on a fresh session; so does CKR_OPERATION_ACTIVE. Any other PKCS#11 error closes the
   * session (it is replaced) and is thrown.
   */
  async use<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      const lease = await this.acquire();
      let out: T;
      try {
        out = await fn(lease.session);
      } catch (e) {
        const tokenFault = isTokenFault(e);
        this.release(lease, e instanceof CkError ? 'discard' : 'keep');
        if (tokenFault) this.markBroken(lease.generation);
        const retry = tokenFault || isCkr(e, ...SESSION_FAULT_CKRS);
        if (attempt > 0 || !retry) throw e;
        continue;
      }
      this.release(lease, 'keep');
      return out;
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
    this.wakeAll();
    if (this.busy > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
    await this.recovering?.catch(() => undefined);
    this.teardown(true);
  }

  /** A session of the current generation; recovers first when the pool is broken. */
  private async acquire(): Promise<Lease> {
    for (;;) {
      if (this.closed) throw new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
      if (this.broken || this.epoch !== this.ck.epoch) await this.recover();
      if (!this.ck.tryEnter()) {
        await this.ck.settled();
        continue;
      }
      if (this.closed || this.broken || this.epoch !== this.ck.epoch) {
        this.ck.leave();
        continue;
      }
      const session = this.idle.pop();
      if (session) {
        this.busy += 1;
        return { session, generation: this.generation };
      }
      this.ck.leave();
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /**
   * Gives a session back. `discard`: the operation on it failed with a PKCS#11 error, so it is
   * closed and a fresh one takes its place (a session from before a recovery is dropped either way).
   */
  private release(lease: Lease, how: 'keep' | 'discard'): void {
    this.busy -= 1;
    const current = lease.generation === this.generation && this.epoch === this.ck.epoch;
    if (current && how === 'keep') {
      this.idle.push(lease.session);
    } else if (current) {
      // The replacement first: closing the token's last session would log the user out.
      this.replaceSession();
      this.quietClose(lease.session);
    } else if (this.epoch === this.ck.epoch) {
      // A session from before a recovery: the token has most likely dropped it already.
      this.quietClose(lease.session);
    }
    // From an older module epoch the handle may name another pool's session now: never close it.
    this.ck.leave();
    this.waiters.shift()?.();
    if (this.closed && this.busy === 0) this.onIdle?.();
  }

  /** Opens a session in place of a discarded one; a token that refuses breaks the pool. */
  private replaceSession(): void {
    if (this.closed || !this.slot) return;
    try {
      this.idle.push(this.ck.openSession(this.slot));
    } catch (e) {
      // The next operation recovers (re-opening every session), subject to the back-off.
      if (isTokenFault(e)) this.markBroken(this.generation);
    }
  }

  /** The sessions of `generation` are unusable: the next operation recovers. */
  private markBroken(generation: number): void {
    if (generation !== this.generation) return;
    this.broken = true;
    this.wakeAll();
  }

  /**
   * One recovery at a time (callers share it). Within the back-off after a failed one, fails at
   * once with the reason it failed for.
   */
  private recover(): Promise<void> {
    if (this.recovering) return this.recovering;
    if (this.closed)
      return Promise.reject(new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed'));
    const f = this.failure;
    if (f && this.backoff.now() < f.nextAttemptAt) return Promise.reject(this.unavailable(f));
    this.recovering = this.reopen()
      .then(
        () => {
          this.failure = null;
        },
        (e: unknown) => {
          const found = toKeywardenError(e, `opening sessions on token '${this.tokenLabel}'`);
          // At start-up the exact cause is the answer (a wrong PIN, label or module); once the
          // token served, a token that cannot be reached again is unavailable, whatever it said.
          const reason =
            this.everOpened && found.code !== 'BACKEND_UNAVAILABLE'
              ? new KeywardenError('BACKEND_UNAVAILABLE', found.message, { cause: found })
              : found;
          const now = this.backoff.now();
          const count = (this.failure?.count ?? 0) + 1;
          const delay = Math.min(this.backoff.initialDelayMs * 2 ** (count - 1), this.backoff.maxDelayMs);
          this.failure = { since: this.failure?.since ?? now, reason, count, nextAttemptAt: now + delay };
          // Once the token served, every answer while it is away says since when, the attempt's
          // own as well as those within the back-off (sign errors, health, readiness).
          throw this.everOpened ? this.unavailable(this.failure) : reason;
        },
      )
      .finally(() => {
        this.recovering = null;
        this.wakeAll();
      });
    return this.recovering;
  }

  /** The error for an operation while the token is unavailable: since when, how often, why. */
  private unavailable(f: NonNullable<SessionPool['failure']>): KeywardenError {
    return new KeywardenError(
      'BACKEND_UNAVAILABLE',
      `PKCS#11 token '${this.tokenLabel}' unavailable since ${new Date(f.since).toISOString()} ` +
        `(${f.count} failed reconnect(s), next at ${new Date(f.nextAttemptAt).toISOString()}): ${f.reason.message}`,
      { cause: f.reason },
    );
  }

  /**
   * Discards every session, then opens new ones and logs in; when the token cannot be reached that
   * way, re-initialises the module and tries once more.
   */
  private async reopen(): Promise<void> {
    this.teardown(false);
    this.generation += 1;
    this.broken = true;
    try {
      this.openSessions();
    } catch (e) {
      if (!this.worthReinitialising(e)) throw e;
      await this.ck.reinitialize();
      if (this.closed) throw new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
      this.openSessions();
    }
  }

  /**
   * A wrong PIN or a locked one stays wrong after C_Initialize; a token missing at the first start
   * is a wrong label. Anything else the token or module answered may be a glitch the module only
   * gets over when re-initialised.
   */
  private worthReinitialising(e: unknown): boolean {
    if (e instanceof KeywardenError) return e.code === 'BACKEND_TOKEN_NOT_FOUND' && this.everOpened;
    if (!(e instanceof CkError)) return false;
    return !isCkr(
      e,
      'CKR_PIN_INCORRECT',
      'CKR_PIN_INVALID',
      'CKR_PIN_LEN_RANGE',
      'CKR_PIN_LOCKED',
      'CKR_PIN_EXPIRED',
    );
  }

  private openSessions(): void {
    if (this.closed) throw new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
    const epoch = this.ck.epoch;
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
    this.epoch = epoch;
    this.ck.retainSlot(slot);
    this.idle = sessions;
    this.broken = false;
    this.everOpened = true;
    this.onReset(this.generation);
  }

  /** Closes the idle sessions and gives back this pool's hold on the login (in the current epoch only). */
  private teardown(final: boolean): void {
    const sessions = this.idle.splice(0);
    if (this.epoch !== this.ck.epoch) {
      // The module was re-initialised: these handles and this login no longer exist.
      this.slot = null;
      return;
    }
    if (this.slot) {
      this.ck.releaseSlot(this.slot, final ? sessions[0] : undefined);
      if (!final) this.slot = null;
    }
    for (const s of sessions) this.quietClose(s);
  }

  private wakeAll(): void {
    for (const wake of this.waiters.splice(0)) wake();
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
