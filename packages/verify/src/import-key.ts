import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { keySpecFor, type SigningAlg } from './algorithms.js';
import type { PublicJwk } from './public-jwk.js';
import { isTokenLifetimeBound } from './check-claims.js';
import type { VerificationKey } from './validate-token.js';

/** RFC 7518 §3.3 asks for at least 2048 bits; keywarden makes 2048 or 3072. */
export const MIN_RSA_MODULUS_BITS = 2048;

/**
 * What importVerificationKey needs: a public JWK, its alg, its lifecycle times and its scope's
 * token lifetime bound.
 */
export interface VerificationKeyInput {
  kid: string;
  alg: SigningAlg;
  publicJwk: PublicJwk;
  activateAt: Date;
  retireAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  /** The scope's maxTokenTtl in seconds: a positive integer, at most 400 days. */
  maxTokenTtlSeconds: number;
}

export type ImportResult = { ok: true; key: VerificationKey } | { ok: false; problem: string };

/**
 * Imports a public JWK once into a node:crypto KeyObject (validation then reuses it on every
 * token) after checking that the key type and curve fit `alg`: an EC P-384 key never verifies
 * ES256, an RSA key below 2048 bits never verifies anything. Only public members are read.
 * A key without a valid token lifetime bound is refused: it would verify tokens of any length.
 */
export function importVerificationKey(input: VerificationKeyInput): ImportResult {
  const { publicJwk: jwk, alg } = input;
  if (typeof input.kid !== 'string' || input.kid.length === 0) return { ok: false, problem: 'kid is empty' };
  if (!isTokenLifetimeBound(input.maxTokenTtlSeconds)) {
    return { ok: false, problem: 'maxTokenTtlSeconds must be a positive integer of at most 400 days' };
  }
  const spec = keySpecFor(alg);
  let material: JsonWebKey;
  if (spec.kty === 'EC') {
    if (jwk.kty !== 'EC' || jwk.crv !== spec.crv)
      return { ok: false, problem: `${alg} needs an EC ${spec.crv} key` };
    if (!isB64u(jwk.x) || !isB64u(jwk.y)) return { ok: false, problem: 'EC key without x/y' };
    material = { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
  } else if (spec.kty === 'RSA') {
    if (jwk.kty !== 'RSA') return { ok: false, problem: `${alg} needs an RSA key` };
    if (!isB64u(jwk.n) || !isB64u(jwk.e)) return { ok: false, problem: 'RSA key without n/e' };
    material = { kty: 'RSA', n: jwk.n, e: jwk.e };
  } else {
    if (jwk.kty !== 'OKP' || jwk.crv !== spec.crv)
      return { ok: false, problem: `${alg} needs an OKP ${spec.crv} key` };
    if (!isB64u(jwk.x)) return { ok: false, problem: 'OKP key without x' };
    material = { kty: 'OKP', crv: jwk.crv, x: jwk.x };
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: material, format: 'jwk' });
  } catch (e) {
    return { ok: false, problem: `not a valid public key: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (spec.kty === 'RSA') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_MODULUS_BITS)
      return { ok: false, problem: `RSA modulus of ${bits} bits is too small` };
  }
  return {
    ok: true,
    key: {
      kid: input.kid,
      alg,
      key,
      activateAt: input.activateAt,
      retireAt: input.retireAt,
      expiresAt: input.expiresAt,
      revokedAt: input.revokedAt,
      maxTokenTtlSeconds: input.maxTokenTtlSeconds,
    },
  };
}

function isB64u(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && /^[A-Za-z0-9_-]+$/.test(v);
}
