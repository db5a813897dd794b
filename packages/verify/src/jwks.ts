import { isSigningAlg, type SigningAlg } from './algorithms.js';
import type { PublicJwk } from './public-jwk.js';
import { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from './algorithms.js';
import { KeySetError } from './errors.js';
import { describeLifetimeBound, isTokenLifetimeBound } from './check-claims.js';
import { importVerificationKey, type VerificationKeyInput } from './import-key.js';
import { parseJsonObject } from './strict-json.js';
import type { VerificationKey } from './validate-token.js';

/**
 * One key as keywarden publishes it in a scope's JWKS. Public members only, plus what a relying
 * party needs to apply the same lifecycle rules as the server: `iss` binds the key to its scope
 * (I5) and the NumericDate times (seconds) carry its life, as OpenID Federation does with
 * `iat`/`nbf`/`exp` on JWKs: `nbf` = activateAt, `retire_at` = retireAt, `exp` = expiresAt.
 * `max_token_ttl` is the scope's maxTokenTtl in seconds: the longest `exp - iat` of a token the
 * key signs. It rides on every JWK, not on the document, because a token is validated against
 * one key and everything that decides which tokens a key can have signed travels with the key.
 */
export interface PublishedJwk extends PublicJwk {
  kid: string;
  alg: SigningAlg;
  use: 'sig';
  iss: string;
  nbf: number;
  exp: number;
  retire_at: number;
  max_token_ttl: number;
}

/** A scope's JWKS document. */
export interface PublishedJwks {
  keys: PublishedJwk[];
}

/** The facts about a key that its published JWK is built from: all a verifier imports but revocation. */
export type PublishableKey = Omit<VerificationKeyInput, 'revokedAt'>;

/** Members that exist only in private or symmetric JWKs: their presence disqualifies a JWK. */
export const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;

/** Public key members per key type: the allowlist a published JWK is built from. */
const PUBLIC_MEMBERS = { EC: ['crv', 'x', 'y'], RSA: ['n', 'e'], OKP: ['crv', 'x'] } as const;

/**
 * Builds the published JWK of a key from an allowlist of public members, so a private member
 * can never leak into a JWKS whatever `publicJwk` carries. Times are rounded to whole seconds
 * towards the stricter side: activation later, retirement and expiry earlier. Throws
 * KEY_NOT_USABLE rather than publish a JWK that relying parties would ignore.
 */
export function toPublishedJwk(key: PublishableKey, issuer: string): PublishedJwk {
  const kty = key.publicJwk.kty;
  const allowed = PUBLIC_MEMBERS[kty] as readonly (keyof PublicJwk)[] | undefined;
  if (!allowed) throw new KeySetError('KEY_NOT_USABLE', `key ${key.kid}: unsupported kty ${String(kty)}`);
  const jwk: Partial<PublishedJwk> = { kty };
  for (const member of allowed) {
    const value = key.publicJwk[member];
    if (typeof value !== 'string' || value.length === 0) {
      throw new KeySetError('KEY_NOT_USABLE', `key ${key.kid}: public JWK has no "${member}"`);
    }
    jwk[member] = value as never;
  }
  if (!isTokenLifetimeBound(key.maxTokenTtlSeconds)) {
    throw new KeySetError(
      'KEY_NOT_USABLE',
      `key ${key.kid}: maxTokenTtlSeconds (${describeLifetimeBound(key.maxTokenTtlSeconds)}) is not a positive integer of at most 400 days`,
    );
  }
  return {
    ...(jwk as Pick<PublishedJwk, 'kty' | 'crv' | 'x' | 'y' | 'n' | 'e'>),
    kid: key.kid,
    alg: key.alg,
    use: 'sig',
    iss: issuer,
    nbf: Math.ceil(key.activateAt.getTime() / 1000),
    exp: Math.floor(key.expiresAt.getTime() / 1000),
    retire_at: Math.floor(key.retireAt.getTime() / 1000),
    max_token_ttl: key.maxTokenTtlSeconds,
  };
}

/** Builds a scope's JWKS document from its published keys. */
export function toPublishedJwks(keys: readonly PublishableKey[], issuer: string): PublishedJwks {
  return { keys: keys.map((k) => toPublishedJwk(k, issuer)) };
}

/** A JWK that parseJwks left out, and why. Ignored keys never verify anything. */
export interface IgnoredJwk {
  index: number;
  kid: string | null;
  problem: string;
}

export type JwksInspection =
  { ok: true; keys: VerificationKey[]; ignored: IgnoredJwk[] } | { ok: false; problem: string };

/**
 * Reads a JWKS (JSON text or parsed value) as published by keywarden for `expectedIssuer`.
 * Keys are imported once. A JWK is ignored when it has a private member, an `iss` other than
 * `expectedIssuer` (I5), an alg outside the allowlist or not fitting its key, `use` other than
 * `sig`, missing or inconsistent lifecycle times, a life longer than the absolute ceiling
 * (I1), or a missing or invalid `max_token_ttl` (not a positive integer of seconds, or over the
 * 400-day ceiling): without the bound the key would accept tokens of any lifetime, so it is
 * not used at all (fail closed; its tokens are then `kid_unknown`). The document as a whole
 * fails only when it is not a JWKS. Keys from a JWKS have `revokedAt` null: revoked keys are
 * simply not published.
 */
export function inspectJwks(body: unknown, expectedIssuer: string): JwksInspection {
  let doc: unknown = body;
  if (typeof body === 'string') {
    const parsed = parseJsonObject(body);
    if (!parsed.ok) {
      return {
        ok: false,
        problem:
          parsed.problem === 'duplicate_member' ? `duplicate member "${parsed.member}"` : 'not a JSON object',
      };
    }
    doc = parsed.value;
  }
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys)) {
    return { ok: false, problem: 'not a JWKS (an object with a "keys" array)' };
  }
  const keys: VerificationKey[] = [];
  const ignored: IgnoredJwk[] = [];
  (doc as { keys: unknown[] }).keys.forEach((jwk, index) => {
    const read = readJwk(jwk, expectedIssuer);
    if (read.ok) keys.push(read.key);
    else ignored.push({ index, kid: read.kid, problem: read.problem });
  });
  return { ok: true, keys, ignored };
}

/**
 * The usable keys of a JWKS published for `expectedIssuer` (see inspectJwks for what is
 * ignored). Throws KeySetError JWKS_INVALID when `body` is not a JWKS at all.
 */
export function parseJwks(body: unknown, expectedIssuer: string): VerificationKey[] {
  const inspection = inspectJwks(body, expectedIssuer);
  if (!inspection.ok) throw new KeySetError('JWKS_INVALID', `invalid JWKS: ${inspection.problem}`);
  return inspection.keys;
}

type JwkRead = { ok: true; key: VerificationKey } | { ok: false; kid: string | null; problem: string };

function readJwk(jwk: unknown, expectedIssuer: string): JwkRead {
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) {
    return { ok: false, kid: null, problem: 'not a JSON object' };
  }
  const j = jwk as Record<string, unknown>;
  const kid = typeof j.kid === 'string' && j.kid.length > 0 ? j.kid : null;
  const bad = (problem: string): JwkRead => ({ ok: false, kid, problem });
  if (kid === null) return bad('no kid');
  for (const member of PRIVATE_JWK_MEMBERS) {
    if (Object.hasOwn(j, member)) return bad(`has the private member "${member}"`);
  }
  if (j.iss !== expectedIssuer) return bad(`iss ${JSON.stringify(j.iss ?? null)} is not ${expectedIssuer}`);
  if (!isSigningAlg(j.alg)) return bad(`alg ${JSON.stringify(j.alg ?? null)} is not allowed`);
  if (j.use !== 'sig') return bad('use is not "sig"');
  const { nbf, retire_at: retireAt, exp } = j;
  if (!isNumericDate(nbf) || !isNumericDate(retireAt) || !isNumericDate(exp)) {
    return bad('nbf, retire_at and exp must all be NumericDates');
  }
  if (!(nbf <= retireAt && retireAt <= exp))
    return bad('times are out of order (need nbf <= retire_at <= exp)');
  if (exp - nbf > ABSOLUTE_MAX_KEY_LIFETIME_SECONDS)
    return bad('lives longer than the absolute key lifetime ceiling');
  const maxTokenTtl = j.max_token_ttl;
  if (!isTokenLifetimeBound(maxTokenTtl)) {
    return bad(
      `max_token_ttl (${describeLifetimeBound(maxTokenTtl)}) is not a positive integer of seconds within the 400-day ceiling`,
    );
  }
  const imported = importVerificationKey({
    kid,
    alg: j.alg,
    publicJwk: j as unknown as PublicJwk,
    activateAt: new Date(nbf * 1000),
    retireAt: new Date(retireAt * 1000),
    expiresAt: new Date(exp * 1000),
    revokedAt: null,
    maxTokenTtlSeconds: maxTokenTtl,
  });
  return imported.ok ? imported : bad(imported.problem);
}

function isNumericDate(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v * 1000 <= 8.64e15;
}
