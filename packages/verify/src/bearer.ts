import { createVerifier, type Verifier, type VerifierOptions } from './create-verifier.js';
import type { ProtectedHeader, VerifiedClaims } from './validate-token.js';

/** What the middleware puts on a request whose bearer token passed complete validation. */
export interface KeywardenAuth {
  claims: VerifiedClaims;
  header: ProtectedHeader;
  kid: string;
  /** The token itself, e.g. to pass on to a downstream service. */
  token: string;
}

/** A claim requirement: the value the claim must have (or contain, if it is an array), or a test. */
export type ClaimRequirement = string | number | boolean | ((value: unknown) => boolean);

/** Options of the fastify plugin and the Express middleware. */
export interface BearerAuthOptions extends VerifierOptions {
  /**
   * A verifier to share (several routes, one key cache and one key-events stream); when given,
   * the VerifierOptions here are not used and closing it is the caller's business.
   */
  verifier?: Verifier;
  /**
   * OAuth scopes the token must carry, every one, in its `scope` claim (space-separated, RFC
   * 9068) or `scp` (an array). Missing ones answer 403 `insufficient_scope`.
   */
  requireScopes?: string[];
  /** Claims the token must have with these values (or that pass these tests); else 401 `claim_mismatch`. */
  requireClaims?: Record<string, ClaimRequirement>;
  /** The `realm` in WWW-Authenticate; default none. */
  realm?: string;
}

/** The answer to a request that failed authentication: status, headers and a JSON body. */
export interface BearerChallenge {
  status: 400 | 401 | 403 | 503;
  headers: Record<string, string>;
  body: { error: string; reason: string; message: string };
}

export type BearerOutcome = { ok: true; auth: KeywardenAuth } | { ok: false; challenge: BearerChallenge };

/** What the frameworks' adapters share: one verifier, and the check of one request. */
export interface BearerAuthenticator {
  authenticate(authorization: string | string[] | undefined): Promise<BearerOutcome>;
  verifier: Verifier;
  /** Closes the verifier if this authenticator created it. */
  close(): void;
}

// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const BEARER_RE = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Builds the request check of both middlewares: the bearer token from `Authorization` (RFC
 * 6750 §2.1; a token in the query or body is not looked at), complete validation, then the
 * required scopes and claims. Failures are RFC 6750 §3 challenges carrying the reason code: no
 * token 401 (no error code, as §3.1 says), a malformed header 400 `invalid_request`, a refused
 * token 401 `invalid_token`, missing scopes 403 `insufficient_scope`. Keys that cannot be
 * fetched answer 503: the token may be fine, and a 401 would make clients drop it.
 * Throws TypeError/RangeError for invalid options, at start-up.
 */
export function createBearerAuthenticator(options: BearerAuthOptions): BearerAuthenticator {
  if (options === null || typeof options !== 'object')
    throw new TypeError('keywardenAuth: options are required');
  const scopes = options.requireScopes ?? [];
  if (
    !Array.isArray(scopes) ||
    !scopes.every((s) => typeof s === 'string' && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))
  ) {
    throw new TypeError('keywardenAuth: requireScopes must be an array of scope tokens (RFC 6749 §3.3)');
  }
  const claims = Object.entries(options.requireClaims ?? {});
  for (const [name, want] of claims) {
    if (!['string', 'number', 'boolean', 'function'].includes(typeof want)) {
      throw new TypeError(
        `keywardenAuth: requireClaims.${name} must be a string, number, boolean or function`,
      );
    }
  }
  const realm = options.realm;
  if (realm !== undefined && (typeof realm !== 'string' || /["\\\r\n]/.test(realm))) {
    throw new TypeError('keywardenAuth: realm must be a string without quotes, backslashes or line breaks');
  }
  const own = options.verifier === undefined;
  const verifier = options.verifier ?? createVerifier(options);

  const challenge = (
    status: BearerChallenge['status'],
    error: string,
    reason: string,
    message: string,
    extra: Record<string, string> = {},
  ): { ok: false; challenge: BearerChallenge } => {
    const params: Record<string, string> = { ...(realm !== undefined ? { realm } : {}) };
    // §3.1: a request without any authentication gets the bare challenge, no error code.
    if (reason !== 'token_missing' && status !== 503) {
      params.error = error;
      params.error_description = reason;
    }
    Object.assign(params, extra);
    const fields = Object.entries(params).map(([k, v]) => `${k}="${v}"`);
    const headers: Record<string, string> = {
      'www-authenticate': fields.length > 0 ? `Bearer ${fields.join(', ')}` : 'Bearer',
      'cache-control': 'no-store',
    };
    if (status === 503) headers['retry-after'] = '5';
    return { ok: false, challenge: { status, headers, body: { error, reason, message } } };
  };

  async function authenticate(authorization: string | string[] | undefined): Promise<BearerOutcome> {
    if (authorization === undefined || authorization === '')
      return challenge(
        401,
        'invalid_request',
        'token_missing',
        'no bearer token in the Authorization header',
      );
    if (typeof authorization !== 'string')
      return challenge(
        400,
        'invalid_request',
        'authorization_malformed',
        'more than one Authorization header',
      );
    const m = BEARER_RE.exec(authorization);
    if (!m) {
      return challenge(
        400,
        'invalid_request',
        'authorization_malformed',
        'the Authorization header is not "Bearer <token>"',
      );
    }
    const token = m[1]!;
    const result = await verifier.verify(token);
    if (!result.valid) {
      if (result.reason === 'jwks_unavailable')
        return challenge(503, 'temporarily_unavailable', result.reason, result.message);
      return challenge(401, 'invalid_token', result.reason, result.message);
    }
    const missing = missingScopes(result.claims, scopes);
    if (missing.length > 0) {
      return challenge(
        403,
        'insufficient_scope',
        'scope_insufficient',
        `the token lacks scope ${missing.join(' ')}`,
        {
          scope: scopes.join(' '),
        },
      );
    }
    for (const [name, want] of claims) {
      if (!claimMeets(result.claims[name], want)) {
        return challenge(
          401,
          'invalid_token',
          'claim_mismatch',
          `claim "${name}" does not have the required value`,
        );
      }
    }
    return { ok: true, auth: { claims: result.claims, header: result.header, kid: result.kid, token } };
  }

  return { authenticate, verifier, close: () => (own ? verifier.close() : undefined) };
}

function missingScopes(claims: VerifiedClaims, required: readonly string[]): string[] {
  if (required.length === 0) return [];
  const granted = new Set<string>();
  if (typeof claims.scope === 'string') for (const s of claims.scope.split(' ')) if (s) granted.add(s);
  if (Array.isArray(claims.scp)) for (const s of claims.scp) if (typeof s === 'string') granted.add(s);
  return required.filter((s) => !granted.has(s));
}

function claimMeets(value: unknown, want: ClaimRequirement): boolean {
  if (typeof want === 'function') {
    try {
      return want(value) === true;
    } catch {
      return false;
    }
  }
  return Array.isArray(value) ? value.includes(want) : value === want;
}
