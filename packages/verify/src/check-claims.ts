import { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from './algorithms.js';
import type { ReasonCode } from './reasons.js';

/** Key lifecycle times, and the scope's token lifetime bound, the claim checks compare against. */
export interface KeyWindow {
  activateAt: Date;
  retireAt: Date;
  expiresAt: Date;
  /**
   * The scope's maxTokenTtl in seconds: the signer caps `exp - iat` at it, so a longer token
   * did not come from the signer. Anything but a valid bound (see isTokenLifetimeBound)
   * refuses every token: a missing bound must not mean an unbounded lifetime.
   */
  maxTokenTtlSeconds: number;
}

/**
 * Whether `v` can be a token lifetime bound: a positive integer number of seconds, at most the
 * absolute key lifetime ceiling of 400 days (I1; no token outlives its key, so no bound is longer).
 */
export function isTokenLifetimeBound(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) > 0 && (v as number) <= ABSOLUTE_MAX_KEY_LIFETIME_SECONDS;
}

/**
 * A would-be bound in a message: short and never throwing, whatever a JWKS or a caller's key
 * lookup put there (JSON.stringify throws on a BigInt, and a string can be a megabyte long).
 */
export function describeLifetimeBound(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (v === undefined || v === null) return String(v);
  return `a ${Array.isArray(v) ? 'array' : typeof v}`;
}

export interface ClaimCheckOptions {
  issuer: string;
  audience: string;
  nowMs: number;
  skewMs: number;
}

export type ClaimFailure = { reason: ReasonCode; message: string };

/**
 * The claim half of complete validation (I6): types of registered claims, then iss, aud,
 * exp, nbf, iat, then that the token fits its key's life (issued while the key was active and
 * not outliving the key), and finally that it lives no longer than its scope's maxTokenTtl.
 * Returns undefined when every check passes.
 */
export function checkClaims(
  claims: Record<string, unknown>,
  key: KeyWindow,
  options: ClaimCheckOptions,
): ClaimFailure | undefined {
  const malformed = malformedClaim(claims);
  if (malformed !== undefined) return { reason: 'claims_malformed', message: malformed };

  const { iss, aud, exp, nbf, iat } = claims as {
    iss?: string;
    aud?: string | string[];
    exp?: number;
    nbf?: number;
    iat?: number;
  };
  if (iss !== options.issuer) {
    return {
      reason: 'issuer_mismatch',
      message:
        iss === undefined
          ? 'the token has no iss claim'
          : `iss ${JSON.stringify(iss)} is not the expected issuer ${JSON.stringify(options.issuer)}`,
    };
  }
  if (aud === undefined) return { reason: 'audience_missing', message: 'the token has no aud claim' };
  if (typeof aud === 'string' ? aud !== options.audience : !aud.includes(options.audience)) {
    return {
      reason: 'audience_mismatch',
      message: `aud ${JSON.stringify(aud)} does not contain ${JSON.stringify(options.audience)}`,
    };
  }

  const { nowMs, skewMs } = options;
  if (exp === undefined) return { reason: 'exp_missing', message: 'the token has no exp claim' };
  if (exp * 1000 <= nowMs - skewMs) {
    return { reason: 'token_expired', message: `the token expired at ${isoSeconds(exp)}` };
  }
  if (nbf !== undefined && nbf * 1000 > nowMs + skewMs) {
    return { reason: 'token_not_yet_valid', message: `the token is not valid before ${isoSeconds(nbf)}` };
  }
  if (iat === undefined) return { reason: 'iat_missing', message: 'the token has no iat claim' };
  const iatMs = iat * 1000;
  if (iatMs > nowMs + skewMs) {
    return {
      reason: 'iat_in_future',
      message: `the token claims to be issued at ${isoSeconds(iat)}, in the future`,
    };
  }
  // A key signs only in [activateAt, retireAt): a token claiming another issue time was made
  // by someone holding the key outside its signing life (a leaked retired key, say).
  if (iatMs < key.activateAt.getTime() - skewMs || iatMs >= key.retireAt.getTime() + skewMs) {
    return {
      reason: 'iat_outside_key_window',
      message: `iat ${isoSeconds(iat)} is outside the key's active window [${key.activateAt.toISOString()}, ${key.retireAt.toISOString()})`,
    };
  }
  if (exp * 1000 > key.expiresAt.getTime() + skewMs) {
    return {
      reason: 'exp_beyond_key_expiry',
      message: `exp ${isoSeconds(exp)} is after the key's expiry ${key.expiresAt.toISOString()}`,
    };
  }
  // The signer never makes exp - iat longer than maxTokenTtl: a longer-lived token was minted by
  // someone holding the key outside the signer (a leak) or by a bug, and would otherwise live
  // until the key's own expiry. Fail closed when the key has no usable bound.
  const bound = key.maxTokenTtlSeconds;
  if (!isTokenLifetimeBound(bound)) {
    return {
      reason: 'token_lifetime_exceeded',
      message: `the key carries no valid token lifetime bound (maxTokenTtl: ${describeLifetimeBound(bound)}), so no lifetime can be accepted`,
    };
  }
  if (exp * 1000 - iatMs > bound * 1000 + skewMs) {
    return {
      reason: 'token_lifetime_exceeded',
      message: `the token lives ${exp - iat} s (iat ${isoSeconds(iat)}, exp ${isoSeconds(exp)}), longer than the scope's maxTokenTtl of ${bound} s (+ ${skewMs / 1000} s clock skew)`,
    };
  }
  return undefined;
}

/** Describes the first registered claim of the wrong type, if any. */
function malformedClaim(c: Record<string, unknown>): string | undefined {
  for (const name of ['iss', 'sub', 'jti'] as const) {
    const v = c[name];
    if (v !== undefined && typeof v !== 'string') return `claim "${name}" must be a string`;
  }
  const aud = c.aud;
  if (
    aud !== undefined &&
    typeof aud !== 'string' &&
    !(Array.isArray(aud) && aud.every((a: unknown) => typeof a === 'string'))
  ) {
    return 'claim "aud" must be a string or an array of strings';
  }
  for (const name of ['exp', 'nbf', 'iat'] as const) {
    const v = c[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v))) {
      return `claim "${name}" must be a NumericDate (a number of seconds)`;
    }
  }
  return undefined;
}

function isoSeconds(seconds: number): string {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? String(seconds) : d.toISOString();
}
