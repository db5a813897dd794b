import { KeywardenError, type ErrorCode } from '../../policy/errors';

/**
 * A PKCS#11 return value other than CKR_OK, normalised. pkcs11js reports them in several shapes
 * (Pkcs11Error with `.code`, and a plain `Error("CKR_...:code")` from C_SetAttributeValue); the
 * seam turns all of them into this one class so nothing above it parses messages.
 */
export class CkError extends Error {
  constructor(
    /** The CKR_* name, e.g. `CKR_PIN_INCORRECT`. */
    readonly ckr: string,
    /** The numeric CK_RV, when pkcs11js reported it. */
    readonly rv: number | null,
    /** The PKCS#11 function that returned it, e.g. `C_Login`. */
    readonly fn: string,
    /**
     * Set when the answer shows the token itself failing although its CKR alone would not say so
     * (a token probe failing after a key lookup found nothing): the pool recovers as for
     * TOKEN_FAULT_CKRS.
     */
    readonly tokenFault = false,
  ) {
    super(`${fn} returned ${ckr}${rv === null ? '' : ` (0x${rv.toString(16)})`}`);
    this.name = 'CkError';
  }
}

const CKR_PATTERN = /(CKR_[A-Z0-9_]+)(?::(\d+))?/;

/**
 * PKCS#11 2.40 return values pkcs11js 2.1 does not know by name and reports as
 * CKR_VENDOR_DEFINED: SoftHSM2 answers a change to a non-modifiable object, or a copy of a
 * non-copyable one, with CKR_ACTION_PROHIBITED.
 */
const RENAMED_BY_RV: ReadonlyMap<number, string> = new Map([[0x1b, 'CKR_ACTION_PROHIBITED']]);

/** Converts whatever pkcs11js threw into a CkError; anything without a CKR name is returned as is. */
export function toCkError(fn: string, e: unknown): unknown {
  if (e instanceof CkError) return e;
  if (!(e instanceof Error)) return e;
  const m = CKR_PATTERN.exec(e.message) ?? CKR_PATTERN.exec(String(e.stack));
  if (!m || m[1] === undefined) return e;
  const code = (e as { code?: unknown }).code;
  const rv = typeof code === 'number' && code > 0 ? code : m[2] !== undefined ? Number(m[2]) : null;
  return new CkError(RENAMED_BY_RV.get(rv ?? -1) ?? m[1], rv, fn);
}

/** True when `e` is a CkError carrying one of the given CKR names. */
export function isCkr(e: unknown, ...names: string[]): e is CkError {
  return e instanceof CkError && names.includes(e.ckr);
}

/**
 * The token, the sessions or the login are gone, or the module lost its connection to them: the
 * pool discards every session, opens new ones and logs in again (re-initialising the module when
 * that fails), and the operation is retried once.
 */
export const TOKEN_FAULT_CKRS = [
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
] as const;

/** True when `e` says the token (not one operation or one session) is failing: see TOKEN_FAULT_CKRS. */
export function isTokenFault(e: unknown): e is CkError {
  return e instanceof CkError && (e.tokenFault || (TOKEN_FAULT_CKRS as readonly string[]).includes(e.ckr));
}

/**
 * One session is in a state it should not be in (an operation still active after a failure): the
 * pool closes that session, and the operation is retried once on a fresh one.
 */
export const SESSION_FAULT_CKRS = ['CKR_OPERATION_ACTIVE'] as const;

/** A cached object handle no longer names the object (destroyed, or handles were reset). */
export const HANDLE_INVALID_CKRS = ['CKR_OBJECT_HANDLE_INVALID', 'CKR_KEY_HANDLE_INVALID'] as const;

/**
 * What signing with a handle this process kept can be answered with once another process destroyed
 * (or replaced) its object: the handle errors, and from SoftHSM2 2.6.1 also CKR_GENERAL_ERROR or
 * CKR_KEY_FUNCTION_NOT_PERMITTED (measured). Only ever a reason to search the token once more.
 */
export const STALE_HANDLE_CKRS = [
  ...HANDLE_INVALID_CKRS,
  'CKR_GENERAL_ERROR',
  'CKR_KEY_FUNCTION_NOT_PERMITTED',
] as const;

const CODE_BY_CKR: Readonly<Record<string, ErrorCode>> = {
  CKR_PIN_INCORRECT: 'BACKEND_PIN_INCORRECT',
  CKR_PIN_LEN_RANGE: 'BACKEND_PIN_INCORRECT',
  CKR_PIN_INVALID: 'BACKEND_PIN_INCORRECT',
  CKR_PIN_LOCKED: 'BACKEND_UNAUTHORIZED',
  CKR_PIN_EXPIRED: 'BACKEND_UNAUTHORIZED',
  CKR_USER_NOT_LOGGED_IN: 'BACKEND_UNAUTHORIZED',
  CKR_USER_PIN_NOT_INITIALIZED: 'BACKEND_UNAUTHORIZED',
  CKR_MECHANISM_INVALID: 'BACKEND_MECHANISM_UNSUPPORTED',
  CKR_MECHANISM_PARAM_INVALID: 'BACKEND_MECHANISM_UNSUPPORTED',
  CKR_CURVE_NOT_SUPPORTED: 'BACKEND_MECHANISM_UNSUPPORTED',
  CKR_DOMAIN_PARAMS_INVALID: 'BACKEND_MECHANISM_UNSUPPORTED',
  CKR_KEY_SIZE_RANGE: 'BACKEND_MECHANISM_UNSUPPORTED',
  CKR_KEY_TYPE_INCONSISTENT: 'BACKEND_MECHANISM_UNSUPPORTED',
  CKR_OBJECT_HANDLE_INVALID: 'BACKEND_OBJECT_NOT_FOUND',
  CKR_KEY_HANDLE_INVALID: 'BACKEND_OBJECT_NOT_FOUND',
  CKR_DEVICE_MEMORY: 'BACKEND_UNAVAILABLE',
  CKR_HOST_MEMORY: 'BACKEND_UNAVAILABLE',
  CKR_DEVICE_ERROR: 'BACKEND_UNAVAILABLE',
  CKR_DEVICE_REMOVED: 'BACKEND_UNAVAILABLE',
  CKR_TOKEN_NOT_PRESENT: 'BACKEND_UNAVAILABLE',
  CKR_TOKEN_NOT_RECOGNIZED: 'BACKEND_UNAVAILABLE',
  CKR_SESSION_COUNT: 'BACKEND_UNAVAILABLE',
  CKR_SESSION_HANDLE_INVALID: 'BACKEND_UNAVAILABLE',
  CKR_SESSION_CLOSED: 'BACKEND_UNAVAILABLE',
  CKR_CRYPTOKI_NOT_INITIALIZED: 'BACKEND_UNAVAILABLE',
  CKR_GENERAL_ERROR: 'BACKEND_ERROR',
};

const HINT_BY_CKR: Readonly<Record<string, string>> = {
  CKR_PIN_INCORRECT: 'the PIN was rejected; check the pin source in the backend config',
  CKR_PIN_LEN_RANGE: 'the PIN has a length the token does not accept',
  CKR_PIN_LOCKED: 'the user PIN is locked; the security officer must unlock it',
  CKR_DEVICE_MEMORY: 'the token is full; destroy expired keys or add capacity',
  CKR_MECHANISM_INVALID: 'the token does not support this mechanism',
};

/**
 * Maps a PKCS#11 failure to a KeywardenError with a stable code and a message that says what was
 * being done. The PIN is never passed here, so it can never end up in a message.
 */
export function toKeywardenError(e: unknown, doing: string): KeywardenError {
  if (e instanceof KeywardenError) return e;
  if (e instanceof CkError) {
    const code = CODE_BY_CKR[e.ckr] ?? 'BACKEND_ERROR';
    const hint = HINT_BY_CKR[e.ckr];
    return new KeywardenError(code, `PKCS#11: ${doing}: ${e.message}${hint ? ` (${hint})` : ''}`, {
      cause: e,
    });
  }
  const detail = e instanceof Error ? e.message : String(e);
  return new KeywardenError('BACKEND_ERROR', `PKCS#11: ${doing}: ${detail}`, { cause: e });
}
