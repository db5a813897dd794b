import { systemClock, type Clock } from '../policy/clock';
import { fetchTrustingCa, type TrustedCa } from './ca-fetch';
import { insecureUrlProblem } from './fetch-document';
import { RemoteKeySet } from './remote-key-set';
import { tokenTypeProblem } from '../policy/token-type';
import {
  DEFAULT_CLOCK_SKEW_SECONDS,
  DEFAULT_MAX_TOKEN_BYTES,
  MAX_CLOCK_SKEW_SECONDS,
  validateToken,
  type ValidationOptions,
  type ValidationResult,
} from './validate-token';

/** Options of createVerifier. `issuer` and `audience` are required: validation is complete or nothing. */
export interface VerifierOptions {
  /** The scope's issuer; tokens must carry exactly this `iss`, and only its keys are used. */
  issuer: string;
  /** This relying party; tokens must name it in `aud`. */
  audience: string;
  /** The scope's JWKS URL; when absent it is discovered from `${issuer}/.well-known/openid-configuration`. */
  jwksUri?: string;
  /** Source of now for validation and caching; defaults to the system clock. */
  clock?: Clock;
  /** 0..300 seconds; default 30. */
  clockSkewSeconds?: number;
  /** fetch implementation; defaults to the global fetch. Not together with `ca`. */
  fetch?: typeof fetch;
  /**
   * PEM CA certificate(s) trusted for the https discovery and JWKS fetches instead of Node's
   * default roots: a keywarden listener with a certificate from a private CA. Redirects are then
   * not followed. Not together with `fetch` (whose TLS settings are its own).
   */
  ca?: TrustedCa;
  /** How many unknown-kid refetches per minute all tokens together may cause; default 6. */
  refetchBudget?: { perMinute: number };
  /** Upper bound on how long a JWKS response is used, whatever its max-age; default 600. */
  maxCacheSeconds?: number;
  /** Default 8192. */
  maxTokenBytes?: number;
  /**
   * Allow plain-http discovery/JWKS URLs to hosts other than loopback. Off by default:
   * whoever can alter the JWKS in transit can mint tokens.
   */
  allowInsecureHttp?: boolean;
  /**
   * The token type this relying party accepts, e.g. `at+jwt` (explicit typing, RFC 8725):
   * tokens whose header `typ` is another type, or absent, are refused (`typ_mismatch`).
   * Compared case-insensitively, with `application/` optional. Default: any `typ`.
   */
  typ?: string;
}

/** A relying party's verifier for one issuer and audience. */
export interface Verifier {
  /**
   * Complete validation of a token (see validateToken) against the issuer's published keys.
   * Never rejects: failures, including JWKS fetch failures (`jwks_unavailable`), are results.
   */
  verify(token: string): Promise<ValidationResult>;
}

export const DEFAULT_REFETCH_PER_MINUTE = 6;
export const DEFAULT_MAX_CACHE_SECONDS = 600;

/**
 * Creates a verifier for the tokens of one keywarden scope (I6): same complete validation as
 * the server, keys from the scope's JWKS, cached per Cache-Control, unknown kids refetched once
 * each under a global budget. Throws TypeError/RangeError for invalid options.
 */
export function createVerifier(options: VerifierOptions): Verifier {
  const o = checkVerifierOptions(options);
  const keys = new RemoteKeySet({
    issuer: o.issuer,
    ...(o.jwksUri !== undefined ? { jwksUri: o.jwksUri } : {}),
    clock: o.clock,
    fetch: o.fetch,
    refetchPerMinute: o.refetchPerMinute,
    maxCacheSeconds: o.maxCacheSeconds,
    allowInsecureHttp: o.allowInsecureHttp,
  });
  const validationOptions = (now: Date): ValidationOptions => ({
    issuer: o.issuer,
    audience: o.audience,
    now,
    clockSkewSeconds: o.clockSkewSeconds,
    maxTokenBytes: o.maxTokenBytes,
    ...(o.typ !== undefined ? { typ: o.typ } : {}),
  });

  async function verify(token: string): Promise<ValidationResult> {
    try {
      if (!keys.isFresh(o.clock.now().getTime())) {
        const refreshed = await keys.refresh();
        if (!refreshed.ok) return { valid: false, reason: 'jwks_unavailable', message: refreshed.problem };
      }
      let requestedKid: string | undefined;
      const result = await validateToken(
        token,
        (kid) => {
          requestedKid = kid;
          return keys.lookup(kid);
        },
        validationOptions(o.clock.now()),
      );
      if (result.valid || result.reason !== 'kid_unknown' || requestedKid === undefined) return result;
      if (!(await keys.refreshForUnknownKid(requestedKid))) return result;
      return await validateToken(token, keys.lookup, validationOptions(o.clock.now()));
    } catch (e) {
      // Nothing above should throw; if something does, deny rather than escape.
      return {
        valid: false,
        reason: 'jwks_unavailable',
        message: `verification failed unexpectedly: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
  }

  return { verify };
}

interface CheckedOptions {
  issuer: string;
  audience: string;
  jwksUri: string | undefined;
  clock: Clock;
  clockSkewSeconds: number;
  fetch: typeof fetch;
  refetchPerMinute: number;
  maxCacheSeconds: number;
  maxTokenBytes: number;
  allowInsecureHttp: boolean;
  typ: string | undefined;
}

function checkVerifierOptions(options: VerifierOptions): CheckedOptions {
  if (options === null || typeof options !== 'object')
    throw new TypeError('createVerifier: options are required');
  const { issuer, audience, jwksUri } = options;
  if (typeof issuer !== 'string' || issuer.trim().length === 0) {
    throw new TypeError('createVerifier: issuer is required (the scope issuer tokens must carry)');
  }
  if (typeof audience !== 'string' || audience.trim().length === 0) {
    throw new TypeError(
      'createVerifier: audience is required (this relying party, as tokens name it in aud)',
    );
  }
  const allowInsecureHttp = options.allowInsecureHttp === true;
  if (jwksUri !== undefined) {
    if (typeof jwksUri !== 'string') throw new TypeError('createVerifier: jwksUri must be a string');
    const problem = insecureUrlProblem(jwksUri, allowInsecureHttp);
    if (problem) throw new TypeError(`createVerifier: jwksUri: ${problem}`);
  } else {
    const problem = insecureUrlProblem(issuer, allowInsecureHttp);
    if (problem) throw new TypeError(`createVerifier: cannot discover keys from issuer: ${problem}`);
  }
  const clock = options.clock ?? systemClock;
  if (typeof clock.now !== 'function') throw new TypeError('createVerifier: clock must have now()');
  if (options.ca !== undefined && options.fetch !== undefined) {
    throw new TypeError(
      'createVerifier: give ca or fetch, not both (a custom fetch brings its own TLS trust)',
    );
  }
  if (options.ca !== undefined && !isPemList(options.ca)) {
    throw new TypeError('createVerifier: ca must be PEM text or a Buffer, or an array of them');
  }
  const fetchImpl =
    options.ca !== undefined ? fetchTrustingCa(options.ca) : (options.fetch ?? globalThis.fetch);
  if (typeof fetchImpl !== 'function') throw new TypeError('createVerifier: no fetch implementation');
  const clockSkewSeconds = options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
  if (
    typeof clockSkewSeconds !== 'number' ||
    !(clockSkewSeconds >= 0 && clockSkewSeconds <= MAX_CLOCK_SKEW_SECONDS)
  ) {
    throw new RangeError(`createVerifier: clockSkewSeconds must be between 0 and ${MAX_CLOCK_SKEW_SECONDS}`);
  }
  const refetchPerMinute = options.refetchBudget?.perMinute ?? DEFAULT_REFETCH_PER_MINUTE;
  if (typeof refetchPerMinute !== 'number' || !Number.isFinite(refetchPerMinute) || refetchPerMinute < 0) {
    throw new RangeError('createVerifier: refetchBudget.perMinute must be a number >= 0');
  }
  const maxCacheSeconds = options.maxCacheSeconds ?? DEFAULT_MAX_CACHE_SECONDS;
  if (typeof maxCacheSeconds !== 'number' || !Number.isFinite(maxCacheSeconds) || maxCacheSeconds <= 0) {
    throw new RangeError('createVerifier: maxCacheSeconds must be a number > 0');
  }
  const maxTokenBytes = options.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  if (!Number.isInteger(maxTokenBytes) || maxTokenBytes <= 0) {
    throw new RangeError('createVerifier: maxTokenBytes must be a positive integer');
  }
  if (options.typ !== undefined) {
    const problem = tokenTypeProblem(options.typ);
    if (problem) throw new TypeError(`createVerifier: ${problem}`);
  }
  return {
    issuer,
    audience,
    jwksUri,
    clock,
    clockSkewSeconds,
    fetch: fetchImpl,
    refetchPerMinute,
    maxCacheSeconds,
    maxTokenBytes,
    allowInsecureHttp,
    typ: options.typ,
  };
}

function isPemList(ca: unknown): boolean {
  const one = (v: unknown) => (typeof v === 'string' && v.includes('-----BEGIN')) || Buffer.isBuffer(v);
  return Array.isArray(ca) ? ca.length > 0 && ca.every(one) : one(ca);
}
