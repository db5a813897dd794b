/**
 * Software keys and hand-built tokens for the validation tests. Tokens are assembled byte by
 * byte (not with a JOSE library) so a test can put anything an attacker would in the header.
 */
import { constants, createHmac, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import type { SigningAlg } from '../../../src/policy/algorithms';
import type { PublicJwk } from '../../../src/policy/key';
import { importVerificationKey } from '../../../packages/verify/src/import-key';
import type { PublishableKey } from '../../../packages/verify/src/jwks';
import type { KeyLookup, VerificationKey } from '../../../packages/verify/src/validate-token';

export const ISSUER = 'https://kw.example/scopes/enterprise';
export const OTHER_ISSUER = 'https://kw.example/scopes/consumer';
export const AUDIENCE = 'mail-api';
export const NOW = new Date(Date.UTC(2026, 2, 1, 12, 0, 0));
export const NOW_S = Math.floor(NOW.getTime() / 1000);
export const DAY_MS = 86_400_000;
/** The scope maxTokenTtl test keys carry unless told otherwise (a day: above every default token). */
export const MAX_TOKEN_TTL_S = 86_400;

export const ALGS: readonly SigningAlg[] = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'];

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function generatePair(alg: SigningAlg, rsaBits = 2048): KeyPair {
  switch (alg) {
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'ES384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'RS256':
    case 'PS256':
      return generateKeyPairSync('rsa', { modulusLength: rsaBits });
    case 'EdDSA':
      return generateKeyPairSync('ed25519');
  }
}

export interface KeyTimesInput {
  activateAt?: Date;
  retireAt?: Date;
  expiresAt?: Date;
  revokedAt?: Date | null;
  /** The scope's maxTokenTtl, seconds; default MAX_TOKEN_TTL_S. */
  maxTokenTtlSeconds?: number;
}

export interface TestKey extends KeyPair {
  alg: SigningAlg;
  kid: string;
  publicJwk: PublicJwk;
  vk: VerificationKey;
}

const pairCache = new Map<string, KeyPair>();

/**
 * A key active at NOW by default (activated a day ago, retiring in 10 days, expiring in 20).
 * `slot` picks distinct key material for the same alg; pairs are cached (RSA keygen is slow).
 */
export function makeKey(alg: SigningAlg, times: KeyTimesInput = {}, slot = 0, kid?: string): TestKey {
  const cacheKey = `${alg}/${slot}`;
  let pair = pairCache.get(cacheKey);
  if (!pair) {
    pair = generatePair(alg);
    pairCache.set(cacheKey, pair);
  }
  const publicJwk = pair.publicKey.export({ format: 'jwk' }) as PublicJwk;
  const id = kid ?? `${alg.toLowerCase()}-${slot}-${randomUUID().slice(0, 8)}`;
  const imported = importVerificationKey({
    kid: id,
    alg,
    publicJwk,
    activateAt: times.activateAt ?? new Date(NOW.getTime() - DAY_MS),
    retireAt: times.retireAt ?? new Date(NOW.getTime() + 10 * DAY_MS),
    expiresAt: times.expiresAt ?? new Date(NOW.getTime() + 20 * DAY_MS),
    revokedAt: times.revokedAt ?? null,
    maxTokenTtlSeconds: times.maxTokenTtlSeconds ?? MAX_TOKEN_TTL_S,
  });
  if (!imported.ok) throw new Error(imported.problem);
  return { ...pair, alg, kid: id, publicJwk, vk: imported.key };
}

export function b64u(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/** Raw JWS signature bytes for `alg` over `input`, as a real signer would make them. */
export function signBytes(alg: string, privateKey: KeyObject | Buffer | string, input: Buffer): Buffer {
  switch (alg) {
    case 'ES256':
      return sign('sha256', input, { key: privateKey as KeyObject, dsaEncoding: 'ieee-p1363' });
    case 'ES384':
      return sign('sha384', input, { key: privateKey as KeyObject, dsaEncoding: 'ieee-p1363' });
    case 'RS256':
      return sign('sha256', input, privateKey as KeyObject);
    case 'PS256':
      return sign('sha256', input, {
        key: privateKey as KeyObject,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      });
    case 'EdDSA':
      return sign(null, input, privateKey as KeyObject);
    case 'HS256':
      return createHmac('sha256', privateKey as Buffer | string)
        .update(input)
        .digest();
    default:
      return Buffer.alloc(0);
  }
}

/**
 * Builds a compact JWS. Header and payload may be objects or raw JSON text (to smuggle
 * duplicate members); `signWith` defaults to the header's alg.
 */
export function forge(
  header: Record<string, unknown> | string,
  payload: Record<string, unknown> | string,
  privateKey: KeyObject | Buffer | string | null,
  signWith?: string,
): string {
  const h = b64u(typeof header === 'string' ? header : JSON.stringify(header));
  const p = b64u(typeof payload === 'string' ? payload : JSON.stringify(payload));
  const input = Buffer.from(`${h}.${p}`);
  const alg = signWith ?? (typeof header === 'string' ? 'none' : String(header.alg));
  const sig = privateKey === null ? Buffer.alloc(0) : signBytes(alg, privateKey, input);
  return `${h}.${p}.${b64u(sig)}`;
}

/** Claims a keywarden scope would sign at NOW, with overrides (undefined deletes a claim). */
export function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    iss: ISSUER,
    sub: 'user-1',
    aud: AUDIENCE,
    iat: NOW_S - 60,
    nbf: NOW_S - 60,
    exp: NOW_S + 600,
    jti: randomUUID(),
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

/** A token a legitimate signer would make with `key`, with claim overrides. */
export function tokenFor(
  key: TestKey,
  overrides: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
) {
  return forge({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }, claims(overrides), key.privateKey);
}

/** The lookup of one scope holding exactly these keys. */
export function lookupOf(...keys: VerificationKey[]): KeyLookup {
  return (kid) => keys.filter((k) => k.kid === kid);
}

export const OPTIONS = { issuer: ISSUER, audience: AUDIENCE, now: NOW } as const;

/** What toPublishedJwk takes for `key`, with `times` (or any other field) replaced. */
export function publishable(key: TestKey, times: Partial<PublishableKey> = {}): PublishableKey {
  return {
    kid: key.kid,
    alg: key.alg,
    publicJwk: key.publicJwk,
    activateAt: key.vk.activateAt,
    retireAt: key.vk.retireAt,
    expiresAt: key.vk.expiresAt,
    maxTokenTtlSeconds: key.vk.maxTokenTtlSeconds,
    ...times,
  };
}
