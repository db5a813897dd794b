import { setTimeout as sleep } from 'node:timers/promises';
import { KeywardenError } from '../../policy/errors';
import { isTransportError, mapAzureError, retryAfterMs, statusOf } from './azure-errors';

/** How hard a call tries before it gives up. All retries are ours: the SDK's own are switched off. */
export interface RetrySettings {
  /** Retries after the first attempt (so at most maxRetries + 1 requests per call). */
  maxRetries: number;
  /** First backoff delay for 5xx/network failures and for 429 without Retry-After; doubles per retry. */
  baseDelayMs: number;
  /** Ceiling of one backoff delay. */
  maxDelayMs: number;
  /**
   * The longest Retry-After we honour by waiting. A vault asking for more is answered with
   * BACKEND_THROTTLED at once (with `details.retryAfterSeconds`), not by blocking a signer for minutes.
   */
  maxRetryAfterMs: number;
  /** Per-attempt timeout; a request that takes longer is aborted and counts as a network failure. */
  requestTimeoutMs: number;
}

export const DEFAULT_RETRY_SETTINGS: Readonly<RetrySettings> = {
  maxRetries: 3,
  baseDelayMs: 500,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 30_000,
  requestTimeoutMs: 30_000,
};

export interface CallOptions {
  /**
   * Safe to repeat after an unknown outcome (5xx, network failure). 429 is retried even when not
   * idempotent: Key Vault answers 429 without performing the operation.
   */
  idempotent: boolean;
  /** Aborts waiting between retries (the backend is closing). */
  signal?: AbortSignal;
}

/**
 * Runs one Key Vault operation with bounded retries: 429 honours Retry-After (up to
 * `maxRetryAfterMs`), idempotent operations also retry 5xx (except 501/505) and network failures
 * with exponential backoff. The final failure is mapped to a KeywardenError naming `what`.
 */
export async function callVault<T>(
  what: string,
  fn: (signal: AbortSignal) => Promise<T>,
  settings: RetrySettings,
  opts: CallOptions,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(AbortSignal.timeout(settings.requestTimeoutMs));
    } catch (e) {
      const plan = retryPlan(e, attempt, settings, opts.idempotent);
      if (plan.delayMs === undefined || attempt >= settings.maxRetries) {
        throw finalError(e, what, attempt, plan.retryAfterMs);
      }
      try {
        await sleep(plan.delayMs, undefined, opts.signal ? { signal: opts.signal } : {});
      } catch {
        throw new KeywardenError('BACKEND_UNAVAILABLE', `${what}: backend closed while waiting to retry`, {
          cause: e,
        });
      }
    }
  }
}

function retryPlan(
  e: unknown,
  attempt: number,
  s: RetrySettings,
  idempotent: boolean,
): { delayMs?: number; retryAfterMs?: number } {
  const status = statusOf(e);
  const ra = retryAfterMs(e);
  const backoff = Math.min(s.maxDelayMs, s.baseDelayMs * 2 ** attempt) * (0.8 + Math.random() * 0.4);
  const honour = (): { delayMs?: number; retryAfterMs?: number } =>
    ra === undefined
      ? { delayMs: backoff }
      : ra > s.maxRetryAfterMs
        ? { retryAfterMs: ra }
        : { delayMs: ra, retryAfterMs: ra };
  if (status === 429) return honour();
  if (!idempotent) return {};
  if ((status !== undefined && status >= 500 && status !== 501 && status !== 505) || isTransportError(e)) {
    return status === 503 ? honour() : { delayMs: backoff };
  }
  return {};
}

function finalError(
  e: unknown,
  what: string,
  retries: number,
  retryAfter: number | undefined,
): KeywardenError {
  const mapped = mapAzureError(e, what);
  if (e instanceof KeywardenError) return mapped;
  const notes: string[] = [];
  if (retries > 0) notes.push(`gave up after ${retries} ${retries === 1 ? 'retry' : 'retries'}`);
  if (retryAfter !== undefined) notes.push(`the vault asked to wait ${Math.ceil(retryAfter / 1000)} s`);
  if (notes.length === 0) return mapped;
  return new KeywardenError(mapped.code, `${mapped.message}; ${notes.join('; ')}`, {
    cause: e,
    ...(retryAfter === undefined ? {} : { details: { retryAfterSeconds: Math.ceil(retryAfter / 1000) } }),
  });
}
