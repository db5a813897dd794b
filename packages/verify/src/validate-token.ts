import type { KeyObject } from 'node:crypto';
import { isSigningAlg, type SigningAlg } from './algorithms.js';
import { effectiveState } from './key-state.js';
import { checkClaims } from './check-claims.js';
import { decodeCompactJws } from './compact-jws.js';
import type { ReasonCode } from './reasons.js';
import { verifyJwsSignature } from './jws-signature.js';
import { isTokenType, tokenTypeProblem } from './token-type.js';

/**
 * A public key as validation needs it: the key itself, the lifecycle times that decide
 * whether it may verify at all (I2) and which tokens it can have signed, and its scope's
 * bound on token lifetimes.
 */
export interface VerificationKey {
  kid: string;
  alg: SigningAlg;
  /** node:crypto public key, imported once (see importVerificationKey). */
  key: KeyObject;
  activateAt: Date;
  retireAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  /**
   * The scope's maxTokenTtl, seconds (a positive integer, at most 400 days): tokens whose
   * `exp - iat` exceeds it plus the clock skew are refused (`token_lifetime_exceeded`). The
   * server takes it from the scope's config, the library from the JWK's `max_token_ttl`. A key
   * without a valid value verifies nothing.
   */
  maxTokenTtlSeconds: number;
}

/**
 * Finds the keys of ONE scope with this kid (I5: the lookup is the scope boundary). An empty
 * array means unknown, more than one means ambiguous; both are refused.
 */
export type KeyLookup = (kid: string) => readonly VerificationKey[];

export interface ValidationOptions {
  /** The scope's issuer; `iss` must equal it exactly. */
  issuer: string;
  /** This relying party; `aud` must be it or contain it. */
  audience: string;
  now: Date;
  /** Tolerance for clocks, 0..300 seconds; default 30. */
  clockSkewSeconds?: number;
  /** Tokens longer than this are refused before any parsing; default 8192. */
  maxTokenBytes?: number;
  /**
   * The token type this relying party accepts, e.g. `at+jwt`: the header `typ` must be it
   * (case-insensitive, `application/` optional). Absent: any `typ`, or none.
   */
  typ?: string;
}

/** The protected header of a token that passed validation. */
export interface ProtectedHeader {
  alg: SigningAlg;
  kid: string;
  typ?: string;
  [member: string]: unknown;
}

/** A JWT claims set: the registered claims (RFC 7519 §4.1) and any others. */
export interface JwtClaims {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  jti?: string;
  nbf?: number;
  exp?: number;
  iat?: number;
  [claim: string]: unknown;
}

/** Claims of a validated token: the registered claims validation required are present. */
export type VerifiedClaims = JwtClaims & { iss: string; aud: string | string[]; exp: number; iat: number };

export type ValidationResult =
  | { valid: true; claims: VerifiedClaims; kid: string; header: ProtectedHeader }
  | { valid: false; reason: ReasonCode; message: string };

export const DEFAULT_CLOCK_SKEW_SECONDS = 30;
export const MAX_CLOCK_SKEW_SECONDS = 300;
export const DEFAULT_MAX_TOKEN_BYTES = 8192;

/** Header members that name or carry a key: the token must not choose its own key. */
const FORBIDDEN_HEADER_MEMBERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256'] as const;

/**
 * Complete validation of a compact JWS JWT (I6): size, structure, header rules, key lookup in
 * the scope, key state at `now`, algorithm, signature, then claims including that the token
 * was issued while its key was active, does not outlive the key, and lives no longer than the
 * scope's maxTokenTtl (`exp - iat`, plus the clock skew). Both the server (keys
 * from the store) and the relying-party library (keys from a JWKS) call this one function;
 * there is deliberately no signature-only variant.
 *
 * Never rejects because of the token or the lookup: every refusal is a result with a stable
 * reason. Rejects (TypeError/RangeError) only for invalid options, which are a programming error.
 */
export async function validateToken(
  token: string,
  lookup: KeyLookup,
  options: ValidationOptions,
): Promise<ValidationResult> {
  const { issuer, audience, now } = options;
  const skewSeconds = options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
  const maxTokenBytes = options.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  checkOptions(issuer, audience, now, skewSeconds, maxTokenBytes);
  if (options.typ !== undefined) {
    const problem = tokenTypeProblem(options.typ);
    if (problem) throw new TypeError(`validateToken: ${problem}`);
  }

  if (typeof token !== 'string') return fail('token_malformed', 'the token must be a string');
  if (token.length > maxTokenBytes || Buffer.byteLength(token) > maxTokenBytes) {
    return fail('token_too_large', `the token is larger than ${maxTokenBytes} bytes`);
  }

  const decoded = decodeCompactJws(token);
  if (!decoded.ok) return fail(decoded.reason, decoded.message);
  const { header, payload, signingInput, signature } = decoded.jws;

  const alg = header.alg;
  if (!isSigningAlg(alg)) {
    return fail('alg_forbidden', `alg ${JSON.stringify(alg ?? null)} is not allowed`);
  }
  for (const member of FORBIDDEN_HEADER_MEMBERS) {
    if (Object.hasOwn(header, member))
      return fail('header_forbidden', `the header must not carry "${member}"`);
  }
  if (Object.hasOwn(header, 'crit'))
    return fail('crit_unsupported', 'no critical header extensions are supported');
  const kid = header.kid;
  if (typeof kid !== 'string' || kid.length === 0) return fail('kid_missing', 'the header has no kid');

  let candidates: readonly VerificationKey[];
  try {
    candidates = lookup(kid);
  } catch (e) {
    return fail('jwks_unavailable', `key lookup failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (candidates.length === 0) return fail('kid_unknown', `no key with kid ${JSON.stringify(kid)}`);
  if (candidates.length > 1)
    return fail('kid_ambiguous', `${candidates.length} keys have kid ${JSON.stringify(kid)}`);
  const key = candidates[0]!;

  // I2: state from the key's times and now, never from a stored status.
  const state = effectiveState(
    {
      activateAt: key.activateAt,
      retireAt: key.retireAt,
      expiresAt: key.expiresAt,
      revokedAt: key.revokedAt,
    },
    now,
  );
  if (state === 'revoked') return fail('key_revoked', `key ${kid} was revoked`);
  if (state === 'expired') return fail('key_expired', `key ${kid} expired at ${key.expiresAt.toISOString()}`);
  // The signer starts with a key at its activation instant by the signer's clock, and the JWK's
  // `nbf` is that instant rounded up to a second: a key activating within the allowed clock skew
  // may already have signed (without this, every token of the first second after a rotation,
  // or of the first N seconds when this clock runs N seconds slow, was refused). The token's own
  // iat must still fall inside the key's window (checkClaims, with the same skew).
  if (state === 'pending' && key.activateAt.getTime() > now.getTime() + skewSeconds * 1000)
    return fail('key_pending', `key ${kid} is not active until ${key.activateAt.toISOString()}`);

  if (alg !== key.alg) return fail('alg_mismatch', `the header alg ${alg} is not the key's alg ${key.alg}`);

  if (!(await verifyJwsSignature(alg, key.key, signingInput, signature))) {
    return fail('signature_invalid', 'the signature does not verify');
  }

  // After the signature: the header is the issuer's, but it may name another kind of token.
  if (options.typ !== undefined && !isTokenType(header.typ, options.typ)) {
    return fail(
      'typ_mismatch',
      `the header typ is ${header.typ === undefined ? 'absent' : JSON.stringify(header.typ)}, not ${JSON.stringify(options.typ)}`,
    );
  }

  const claimFailure = checkClaims(payload, key, {
    issuer,
    audience,
    nowMs: now.getTime(),
    skewMs: skewSeconds * 1000,
  });
  if (claimFailure) return fail(claimFailure.reason, claimFailure.message);

  return { valid: true, claims: payload as VerifiedClaims, kid, header: header as ProtectedHeader };
}

function fail(reason: ReasonCode, message: string): ValidationResult {
  return { valid: false, reason, message };
}

function checkOptions(issuer: string, audience: string, now: Date, skew: number, maxBytes: number): void {
  if (typeof issuer !== 'string' || issuer.length === 0)
    throw new TypeError('validateToken: issuer is required');
  if (typeof audience !== 'string' || audience.length === 0) {
    throw new TypeError('validateToken: audience is required');
  }
  if (!(now instanceof Date) || Number.isNaN(now.getTime()))
    throw new TypeError('validateToken: now must be a Date');
  if (typeof skew !== 'number' || !(skew >= 0 && skew <= MAX_CLOCK_SKEW_SECONDS)) {
    throw new RangeError(`validateToken: clockSkewSeconds must be between 0 and ${MAX_CLOCK_SKEW_SECONDS}`);
  }
  if (!Number.isInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError('validateToken: maxTokenBytes must be a positive integer');
  }
}
