import { KeywardenError } from '../../policy/errors';

/** The parts of @azure/core-rest-pipeline's RestError we read (duck-typed: no transitive import). */
export interface RestErrorLike extends Error {
  statusCode?: number;
  code?: string;
  details?: unknown;
  response?: { headers: { get(name: string): string | undefined } };
}

export function isRestError(e: unknown): e is RestErrorLike {
  return e instanceof Error && e.name === 'RestError';
}

/** Key Vault refuses a key it considers unusable with 403 and one of these inner codes. */
const KEY_STATE_CODES = new Set(['KeyDisabled', 'KeyExpired', 'KeyNotYetValid']);
/** Same, by message, for vaults whose inner code we do not know ("...on an expired key."). */
const KEY_STATE_MESSAGE =
  /\bon an? (expired|disabled|not[- ]yet[- ]valid) key\b|\bkey (is )?not yet valid\b/i;
/** The SDK's own validity check in CryptographyClient (it caches the key's nbf/exp). */
const SDK_VALIDITY_MESSAGE = /^Key \S+ (expired at|can't be used before) /;

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const AUTH_ERROR_NAMES = new Set([
  'AuthenticationError',
  'AggregateAuthenticationError',
  'CredentialUnavailableError',
  'AuthenticationRequiredError',
]);

/** Key Vault's `{error:{code,message,innererror}}`, as the SDK deserializes it into `details`. */
function vaultError(e: RestErrorLike): { code?: string; message?: string; inner?: string } {
  const err = (e.details as { error?: { code?: string; message?: string; innerError?: { code?: string } } })
    ?.error;
  return { code: err?.code ?? e.code, message: err?.message, inner: err?.innerError?.code };
}

/** True for a TLS certificate failure: permanent until configuration changes, so never retried. */
export function isTlsError(e: unknown): boolean {
  return isRestError(e) && e.code !== undefined && TLS_CODES.has(e.code);
}

/** Milliseconds the server asked us to wait (Retry-After, seconds or HTTP date; or the -ms variants). */
export function retryAfterMs(e: unknown): number | undefined {
  if (!isRestError(e) || !e.response) return undefined;
  const h = e.response.headers;
  for (const name of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const v = Number(h.get(name));
    if (h.get(name) !== undefined && Number.isFinite(v) && v >= 0) return v;
  }
  const ra = h.get('retry-after');
  if (ra === undefined) return undefined;
  const seconds = Number(ra);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(ra);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

/** HTTP status of a failed call; undefined for network, TLS, timeout and credential failures. */
export function statusOf(e: unknown): number | undefined {
  return isRestError(e) ? e.statusCode : undefined;
}

/** A network-level failure or timeout: the request may or may not have reached the vault. */
export function isTransportError(e: unknown): boolean {
  if (e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError')) return true;
  return isRestError(e) && e.statusCode === undefined && !isTlsError(e);
}

/**
 * Maps anything the SDK, the pipeline or the credential throws to a KeywardenError:
 * network/timeout/5xx → BACKEND_UNAVAILABLE, 401/403 → BACKEND_UNAUTHORIZED (403 for an
 * expired, not-yet-valid or disabled key → BACKEND_KEY_EXPIRED), 404 → BACKEND_OBJECT_NOT_FOUND,
 * 409 → BACKEND_OBJECT_EXISTS, 429 → BACKEND_THROTTLED, anything else → BACKEND_ERROR.
 * `what` says which vault and operation, e.g. `Azure Key Vault kv.vault.azure.net: sign with key k1`.
 */
export function mapAzureError(e: unknown, what: string): KeywardenError {
  if (e instanceof KeywardenError) return e;
  const opts = { cause: e };
  if (isRestError(e)) {
    const status = e.statusCode;
    if (status === undefined) {
      if (isTlsError(e)) {
        return new KeywardenError(
          'BACKEND_UNAVAILABLE',
          `${what}: TLS certificate not trusted (${e.code}: ${e.message}); if the vault is reached through ` +
            'a private endpoint or proxy with its own CA, set caFile on the backend',
          opts,
        );
      }
      return new KeywardenError(
        'BACKEND_UNAVAILABLE',
        `${what}: vault unreachable (${e.code ?? 'network error'}: ${e.message})`,
        opts,
      );
    }
    const v = vaultError(e);
    const detail = `HTTP ${status}${v.code ? ` ${v.code}` : ''}${v.inner ? `/${v.inner}` : ''}: ${v.message ?? e.message}`;
    if (status === 401)
      return new KeywardenError('BACKEND_UNAUTHORIZED', `${what}: not authenticated (${detail})`, opts);
    if (status === 403) {
      if (
        (v.inner !== undefined && KEY_STATE_CODES.has(v.inner)) ||
        KEY_STATE_MESSAGE.test(v.message ?? '')
      ) {
        return new KeywardenError(
          'BACKEND_KEY_EXPIRED',
          `${what}: the vault refuses the key (${detail})`,
          opts,
        );
      }
      return new KeywardenError('BACKEND_UNAUTHORIZED', `${what}: permission denied (${detail})`, opts);
    }
    if (status === 404)
      return new KeywardenError('BACKEND_OBJECT_NOT_FOUND', `${what}: not found (${detail})`, opts);
    if (status === 409)
      return new KeywardenError('BACKEND_OBJECT_EXISTS', `${what}: conflict (${detail})`, opts);
    if (status === 429)
      return new KeywardenError('BACKEND_THROTTLED', `${what}: throttled (${detail})`, opts);
    if (status >= 500)
      return new KeywardenError('BACKEND_UNAVAILABLE', `${what}: vault error (${detail})`, opts);
    return new KeywardenError('BACKEND_ERROR', `${what}: request refused (${detail})`, opts);
  }
  if (e instanceof Error) {
    if (e.name === 'AbortError' || e.name === 'TimeoutError') {
      return new KeywardenError('BACKEND_UNAVAILABLE', `${what}: no answer from the vault in time`, opts);
    }
    if (AUTH_ERROR_NAMES.has(e.name)) {
      return new KeywardenError(
        'BACKEND_UNAUTHORIZED',
        `${what}: could not get a token (${e.name}: ${e.message})`,
        opts,
      );
    }
    if (SDK_VALIDITY_MESSAGE.test(e.message)) {
      return new KeywardenError(
        'BACKEND_KEY_EXPIRED',
        `${what}: key outside its validity window (${e.message})`,
        opts,
      );
    }
    return new KeywardenError('BACKEND_ERROR', `${what}: ${e.name}: ${e.message}`, opts);
  }
  return new KeywardenError('BACKEND_ERROR', `${what}: ${String(e)}`, opts);
}
