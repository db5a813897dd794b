import { auditBackendName } from '../audit/audit-key';
import { KeywardenError, type ErrorCode } from '../policy/errors';
import type { LifecycleContext } from './context';

/**
 * Backend failures at start-up that no waiting or retrying fixes: the module is missing or is not
 * a PKCS#11 library, the token label names no token, the PIN is wrong or locked. `serve` exits with
 * the code's exit status (6) on them instead of running unready: a supervisor (systemd, an
 * orchestrator) shows a failed service, and a wrong PIN is not tried again and again against the
 * token's retry counter. Anything else (a token or vault that does not answer now) heals while the
 * daemon runs: it starts unready and is ready once the backend answers (docs/operations.md).
 */
export const FATAL_AT_START: readonly ErrorCode[] = [
  'CONFIG_INVALID',
  'BACKEND_MODULE_NOT_FOUND',
  'BACKEND_TOKEN_NOT_FOUND',
  'BACKEND_PIN_INCORRECT',
  'BACKEND_UNAUTHORIZED',
];

/** A backend that could not be opened at start for a reason that may pass. */
export interface BackendStartFailure {
  backend: string;
  error: KeywardenError;
}

/**
 * Opens every backend a scope or the audit key uses, once each. Throws the first failure in
 * FATAL_AT_START (naming the backend); returns the others, for the caller to log.
 */
export async function requireBackends(
  ctx: Pick<LifecycleContext, 'config' | 'backend'>,
): Promise<BackendStartFailure[]> {
  const names = new Set(ctx.config.scopes.map((s) => s.backend));
  const audit = auditBackendName(ctx.config);
  if (audit) names.add(audit);
  const failures: BackendStartFailure[] = [];
  for (const backend of names) {
    try {
      await ctx.backend(backend);
    } catch (e) {
      const error =
        e instanceof KeywardenError
          ? e
          : new KeywardenError('BACKEND_ERROR', (e as Error)?.message ?? String(e), { cause: e });
      if (FATAL_AT_START.includes(error.code)) {
        throw new KeywardenError(error.code, `backend ${backend}: ${error.message}`, { cause: error });
      }
      failures.push({ backend, error });
    }
  }
  return failures;
}
