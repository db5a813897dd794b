import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import * as pkcs11js from 'pkcs11js';
import { KeywardenError } from '../../policy/errors';
import { CkError, isCkr, toCkError } from './ck-error';

/**
 * The narrow seam over pkcs11js (cf. smallstep kms/pkcs11): the only file that calls the native
 * binding. Every failure leaves here as a CkError; nothing above parses pkcs11js messages.
 */

export type Handle = Buffer;
export type Attribute = pkcs11js.Attribute;
export type Mechanism = pkcs11js.Mechanism;
export type ModuleInfo = pkcs11js.ModuleInfo;
export type SlotInfo = pkcs11js.SlotInfo;
export type TokenInfo = pkcs11js.TokenInfo;

/** Session states in which the user is logged in (CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS). */
const USER_SESSION_STATES: ReadonlySet<number> = new Set([1, 3]);
/** CKF_TOKEN_PRESENT (missing from pkcs11js's typings). */
export const CKF_TOKEN_PRESENT = 0x1;

interface LoadedModule {
  ck: Cryptoki;
  refs: number;
  envKey: string;
}

/** How long a re-initialisation waits for operations already on the token to end. */
const REINITIALIZE_WAIT_MS = 10_000;

/** One PKCS#11 library can be C_Initialize'd once per process, so loaded modules are shared. */
const loaded = new Map<string, LoadedModule>();

/** A loaded, initialised PKCS#11 module. Obtain with `Cryptoki.open`, give back with `release`. */
export class Cryptoki {
  /** Per-slot count of backends holding a login, so one closing does not log out another. */
  private readonly slotUsers = new Map<string, number>();
  /** Keyed MAC of the PIN that logged each slot in: a second login with another PIN is refused. */
  private readonly slotPinMacs = new Map<string, Buffer>();
  private readonly macKey = randomBytes(32);
  /** The tail of the queue `oneAtATime` keeps. */
  private queueTail: Promise<unknown> = Promise.resolve();
  /**
   * Counts C_Initialize's: every session, login and object handle belongs to one epoch and is
   * meaningless after the next (a module re-initialised hands out the same handle numbers again).
   */
  private currentEpoch = 1;
  /** False after a failed re-initialisation: the next `reinitialize` tries C_Initialize again. */
  private initialized = true;
  /** Sessions in use (`enter`..`leave`) across every pool on this module in this process. */
  private active = 0;
  private whenIdle: (() => void)[] = [];
  /** Set while a re-initialisation waits for the sessions in use, or runs. */
  private reinitializing: Promise<void> | null = null;

  private constructor(
    readonly modulePath: string,
    private readonly pk: pkcs11js.PKCS11,
  ) {}

  /**
   * Runs `task` once every task queued before it on this module (in this process) has settled,
   * whatever their outcome. For operations the module gets wrong when they overlap.
   */
  oneAtATime<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queueTail.then(task, task);
    this.queueTail = run.catch(() => undefined);
    return run;
  }

  /**
   * Loads and initialises (CKF_OS_LOCKING_OK) the module at `modulePath` after copying `moduleEnv`
   * into process.env (vendor modules read their config from the environment at C_Initialize), or
   * shares the instance already loaded in this process.
   */
  static open(modulePath: string, moduleEnv: Readonly<Record<string, string>> = {}): Cryptoki {
    const path = resolve(modulePath);
    const envKey = JSON.stringify(Object.entries(moduleEnv).sort(([a], [b]) => a.localeCompare(b)));
    const existing = loaded.get(path);
    if (existing) {
      if (existing.envKey !== envKey) {
        throw new KeywardenError(
          'BACKEND_ERROR',
          `PKCS#11 module ${path} is already loaded in this process with a different moduleEnv ` +
            `(${Object.keys(moduleEnv).join(', ') || 'none'}); a module reads its environment once, ` +
            'at C_Initialize, so every backend using it in one process must share one moduleEnv',
        );
      }
      existing.refs += 1;
      return existing.ck;
    }
    if (!existsSync(path)) {
      throw new KeywardenError(
        'BACKEND_MODULE_NOT_FOUND',
        `PKCS#11 module not found: ${path} does not exist`,
      );
    }
    for (const [k, v] of Object.entries(moduleEnv)) process.env[k] = v;
    const pk = new pkcs11js.PKCS11();
    try {
      pk.load(path);
    } catch (e) {
      throw new KeywardenError(
        'BACKEND_MODULE_NOT_FOUND',
        `PKCS#11 module ${path} could not be loaded (is it a PKCS#11 library for this platform?): ` +
          (e instanceof Error ? e.message : String(e)),
        { cause: e },
      );
    }
    try {
      pk.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      const ce = toCkError('C_Initialize', e);
      if (!isCkr(ce, 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) {
        try {
          pk.close();
        } catch {
          // Unloading a module that failed to initialise is best effort.
        }
        throw new KeywardenError(
          'BACKEND_MODULE_NOT_FOUND',
          `PKCS#11 module ${path} failed to initialise: ${ce instanceof Error ? ce.message : String(ce)} ` +
            '(check moduleEnv, e.g. SOFTHSM2_CONF, and the module configuration it points at)',
          { cause: ce },
        );
      }
    }
    const ck = new Cryptoki(path, pk);
    loaded.set(path, { ck, refs: 1, envKey });
    return ck;
  }

  /** The current epoch (see `reinitialize`): sessions of an older epoch must never be used or closed. */
  get epoch(): number {
    return this.currentEpoch;
  }

  /**
   * Counts one session in use, unless a re-initialisation is pending: then false, and the caller
   * waits for `settled()` and looks again. Every successful `tryEnter` is followed by one `leave`.
   */
  tryEnter(): boolean {
    if (this.reinitializing) return false;
    this.active += 1;
    return true;
  }

  /** Resolves once no re-initialisation is pending (whatever its outcome). */
  async settled(): Promise<void> {
    while (this.reinitializing) await this.reinitializing.catch(() => undefined);
  }

  leave(): void {
    this.active -= 1;
    if (this.active === 0) for (const wake of this.whenIdle.splice(0)) wake();
  }

  /**
   * C_Finalize + C_Initialize, once no session of this module is in use in this process (a
   * C_Finalize under a running C_Sign can crash the process). What a token that went away and
   * came back needs: SoftHSM2 keeps answering CKR_GENERAL_ERROR for a token whose directory
   * vanished until it is re-initialised, and p11-kit's client module reconnects to its server only
   * at C_Initialize. Every session, login and handle of every backend on this module is gone
   * afterwards: the epoch moves on and the pools re-open theirs. Concurrent calls share one run.
   */
  reinitialize(): Promise<void> {
    if (this.reinitializing) return this.reinitializing;
    const run = (async () => {
      if (this.active > 0) await this.idleWithin(REINITIALIZE_WAIT_MS);
      this.currentEpoch += 1;
      this.slotUsers.clear();
      this.slotPinMacs.clear();
      if (this.initialized) this.quiet(() => this.pk.C_Finalize());
      this.initialized = false;
      try {
        this.pk.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
      } catch (e) {
        const ce = toCkError('C_Initialize', e);
        if (!isCkr(ce, 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw ce;
      }
      this.initialized = true;
    })();
    this.reinitializing = run.finally(() => {
      this.reinitializing = null;
    });
    return this.reinitializing;
  }

  /**
   * Resolves once no session is in use; rejects after `ms` (an operation the token never answers
   * must not hold every other caller forever: the recovery fails and is tried again later).
   */
  private idleWithin(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.whenIdle = this.whenIdle.filter((w) => w !== wake);
        reject(
          new CkError('CKR_FUNCTION_CANCELED', null, 'C_Finalize (operations still running on the token)'),
        );
      }, ms);
      timer.unref();
      this.whenIdle.push(wake);
    });
  }

  /** Gives back one `open`; the last one finalises and unloads the module. */
  release(): void {
    const entry = loaded.get(this.modulePath);
    if (!entry || entry.ck !== this) return;
    entry.refs -= 1;
    if (entry.refs > 0) return;
    loaded.delete(this.modulePath);
    if (this.initialized) this.quiet(() => this.pk.C_Finalize());
    this.quiet(() => this.pk.close());
  }

  info(): ModuleInfo {
    return this.call('C_GetInfo', () => this.pk.C_GetInfo());
  }

  slots(tokenPresent = false): Handle[] {
    return this.call('C_GetSlotList', () => this.pk.C_GetSlotList(tokenPresent));
  }

  slotInfo(slot: Handle): SlotInfo {
    return this.call('C_GetSlotInfo', () => this.pk.C_GetSlotInfo(slot));
  }

  tokenInfo(slot: Handle): TokenInfo {
    return this.call('C_GetTokenInfo', () => this.pk.C_GetTokenInfo(slot));
  }

  mechanisms(slot: Handle): number[] {
    return this.call('C_GetMechanismList', () => this.pk.C_GetMechanismList(slot));
  }

  /** The slot whose token carries `label` (labels are blank padded to 32 bytes), or null. */
  findTokenSlot(label: string): Handle | null {
    for (const slot of this.slots(true)) {
      if (this.tokenInfo(slot).label.trimEnd() === label) return slot;
    }
    return null;
  }

  openSession(slot: Handle): Handle {
    const flags = pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION;
    return this.call('C_OpenSession', () => this.pk.C_OpenSession(slot, flags));
  }

  closeSession(session: Handle): void {
    this.call('C_CloseSession', () => this.pk.C_CloseSession(session));
  }

  closeAllSessions(slot: Handle): void {
    this.call('C_CloseAllSessions', () => this.pk.C_CloseAllSessions(slot));
  }

  /** True when the session is in a logged-in user state. */
  isUserSession(session: Handle): boolean {
    const info = this.call('C_GetSessionInfo', () => this.pk.C_GetSessionInfo(session));
    return USER_SESSION_STATES.has(info.state);
  }

  /**
   * Logs the user in. Login state is per process and token, so CKR_USER_ALREADY_LOGGED_IN is
   * success, but only for the PIN that logged in first: anything else is CKR_PIN_INCORRECT.
   */
  login(slot: Handle, session: Handle, pin: string): void {
    const slotKey = slot.toString('hex');
    const mac = createHmac('sha256', this.macKey).update(pin).digest();
    try {
      this.call('C_Login', () => this.pk.C_Login(session, pkcs11js.CKU_USER, pin));
    } catch (e) {
      if (!isCkr(e, 'CKR_USER_ALREADY_LOGGED_IN')) throw e;
      const known = this.slotPinMacs.get(slotKey);
      if (known && !timingSafeEqual(known, mac)) throw new CkError('CKR_PIN_INCORRECT', null, 'C_Login');
    }
    this.slotPinMacs.set(slotKey, mac);
  }

  /** Records one more user of the slot's login. */
  retainSlot(slot: Handle): void {
    const k = slot.toString('hex');
    this.slotUsers.set(k, (this.slotUsers.get(k) ?? 0) + 1);
  }

  /** Drops one user; logs out when it was the last (logging out affects every session). */
  releaseSlot(slot: Handle, session: Handle | undefined): void {
    const k = slot.toString('hex');
    const left = (this.slotUsers.get(k) ?? 1) - 1;
    if (left > 0) {
      this.slotUsers.set(k, left);
      return;
    }
    this.slotUsers.delete(k);
    this.slotPinMacs.delete(k);
    if (session) this.quiet(() => this.pk.C_Logout(session));
  }

  /** All handles matching `template` (an empty template matches every visible object). */
  findObjects(session: Handle, template: Attribute[]): Handle[] {
    return this.call('C_FindObjects', () => {
      this.pk.C_FindObjectsInit(session, template);
      try {
        const out: Handle[] = [];
        for (;;) {
          const batch = this.pk.C_FindObjects(session, 64);
          out.push(...batch);
          if (batch.length < 64) return out;
        }
      } finally {
        this.pk.C_FindObjectsFinal(session);
      }
    });
  }

  /** Reads attributes in one call; throws if any of them cannot be read. */
  getAttributes(session: Handle, object: Handle, types: number[]): Map<number, Buffer> {
    const res = this.call('C_GetAttributeValue', () =>
      this.pk.C_GetAttributeValue(
        session,
        object,
        types.map((type) => ({ type })),
      ),
    );
    return new Map(res.map((a) => [a.type, a.value]));
  }

  /** Reads one attribute; undefined when the token refuses it (sensitive, invalid, unavailable). */
  tryGetAttribute(session: Handle, object: Handle, type: number): Buffer | undefined {
    try {
      return this.getAttributes(session, object, [type]).get(type);
    } catch (e) {
      if (e instanceof CkError && !isCkr(e, 'CKR_SESSION_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID')) {
        return undefined;
      }
      throw e;
    }
  }

  setAttributes(session: Handle, object: Handle, template: Attribute[]): void {
    this.call('C_SetAttributeValue', () => this.pk.C_SetAttributeValue(session, object, template));
  }

  /** Generates a keypair on the libuv thread pool (RSA generation takes long enough to matter). */
  async generateKeyPair(
    session: Handle,
    mechanism: Mechanism,
    publicTemplate: Attribute[],
    privateTemplate: Attribute[],
  ): Promise<{ publicKey: Handle; privateKey: Handle }> {
    try {
      return await this.pk.C_GenerateKeyPairAsync(session, mechanism, publicTemplate, privateTemplate);
    } catch (e) {
      throw toCkError('C_GenerateKeyPair', e);
    }
  }

  /**
   * One-shot signature. C_SignInit is quick and synchronous; the signature itself runs on the
   * libuv thread pool so the event loop keeps serving while the token works.
   */
  async sign(session: Handle, mechanism: Mechanism, key: Handle, data: Buffer): Promise<Buffer> {
    this.call('C_SignInit', () => this.pk.C_SignInit(session, mechanism, key));
    try {
      // 1024 bytes fits every signature we make (RSA up to 8192 bits).
      // pkcs11js answers with a view of this buffer: nothing else holds it, so no copy is needed.
      return await this.pk.C_SignAsync(session, data, Buffer.alloc(1024));
    } catch (e) {
      throw toCkError('C_Sign', e);
    }
  }

  /** Creates an object (keywarden makes only key seal data objects this way). */
  createObject(session: Handle, template: Attribute[]): Handle {
    return this.call('C_CreateObject', () => this.pk.C_CreateObject(session, template));
  }

  destroyObject(session: Handle, object: Handle): void {
    this.call('C_DestroyObject', () => this.pk.C_DestroyObject(session, object));
  }

  private call<T>(fn: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw toCkError(fn, e);
    }
  }

  private quiet(f: () => void): void {
    try {
      f();
    } catch {
      // Teardown is best effort: the module may already be gone.
    }
  }
}
