/**
 * Errors are API: every error keywarden raises carries a stable `code`. HTTP maps codes to
 * statuses and the CLI to exit codes (see `src/http/error-status.ts`, `src/cli/exit-codes.ts`);
 * policy code only names what went wrong. Every code is documented in `docs/errors.md` and a
 * test keeps the two in step.
 */
export const ERROR_CODES = [
  'CONFIG_INVALID',
  'SCOPE_NOT_FOUND',
  'KEY_NOT_FOUND',
  'KEY_NOT_USABLE',
  'NO_ACTIVE_KEY',
  'CLAIMS_INVALID',
  'REQUEST_INVALID',
  'TOKEN_INVALID',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'CLIENT_NOT_FOUND',
  'CLIENT_EXISTS',
  'CLIENT_UNTRUSTED',
  'BACKEND_MODULE_NOT_FOUND',
  'BACKEND_TOKEN_NOT_FOUND',
  'BACKEND_PIN_INCORRECT',
  'BACKEND_MECHANISM_UNSUPPORTED',
  'BACKEND_OBJECT_NOT_FOUND',
  'BACKEND_OBJECT_EXISTS',
  'BACKEND_UNAVAILABLE',
  'BACKEND_UNAUTHORIZED',
  'BACKEND_THROTTLED',
  'BACKEND_KEY_EXPIRED',
  'BACKEND_ERROR',
  'STORE_ERROR',
  'STORE_NOT_INITIALIZED',
  'LOCK_BUSY',
  'RATE_LIMITED',
  'AUDIT_CHAIN_BROKEN',
  'AUDIT_PRUNE_REFUSED',
  'SCAN_ERROR',
  'SHUTTING_DOWN',
  'LISTEN_FAILED',
  'DAEMON_UNREACHABLE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Base class of every error keywarden raises on purpose. Tests assert `code`, never message. */
export class KeywardenError extends Error {
  readonly code: ErrorCode;
  /** Structured, secret-free details for JSON output (e.g. the list of config problems). */
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KeywardenError';
    this.code = code;
    if (options.details !== undefined) this.details = options.details;
  }
}

/** One problem found while validating configuration. */
export interface ConfigProblem {
  /** Dotted path of the offending field, e.g. `scopes[0].policy.verifyGrace`. */
  path: string;
  /** Scope name when the problem is inside a scope. */
  scope?: string;
  message: string;
}

/** Thrown once with every problem in the file, never just the first. */
export class ConfigInvalidError extends KeywardenError {
  readonly problems: readonly ConfigProblem[];
  constructor(source: string, problems: readonly ConfigProblem[]) {
    super(
      'CONFIG_INVALID',
      `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n` +
        problems.map((p) => `  - ${p.path}${p.scope ? ` (scope ${p.scope})` : ''}: ${p.message}`).join('\n'),
      { details: problems },
    );
    this.problems = problems;
  }
}

/** True when `e` is a KeywardenError with the given code. */
export function hasCode(e: unknown, code: ErrorCode): boolean {
  return e instanceof KeywardenError && e.code === code;
}
