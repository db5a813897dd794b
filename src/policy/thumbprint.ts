import { createHash } from 'node:crypto';
import type { PublicJwk } from './key';

/** RFC 7638 §3.2: each key type's required members, in lexicographic order. */
const REQUIRED_MEMBERS: Record<string, readonly string[]> = {
  EC: ['crv', 'kty', 'x', 'y'],
  RSA: ['e', 'kty', 'n'],
  OKP: ['crv', 'kty', 'x'],
};

/**
 * RFC 7638 JWK thumbprint (base64url SHA-256): the kid of every keywarden key, and the fingerprint
 * the leak scanner matches found keys by. Hashed here rather than with jose's
 * calculateJwkThumbprint, whose WebCrypto digest cost ~30 µs a key against ~3 µs: the start-up
 * integrity check takes one per live row (100,000 at a time). The canonical form is jose's
 * (JSON.stringify of the required members in order; other members, private ones included, are
 * ignored); test/unit/policy/thumbprint.test.ts holds the two equal on every key type. Rejects a
 * JWK of another type or missing a member.
 */
export function thumbprint(jwk: PublicJwk): Promise<string> {
  try {
    return Promise.resolve(thumbprintNow(jwk));
  } catch (e) {
    return Promise.reject(e as Error);
  }
}

/** thumbprint(), synchronously. */
export function thumbprintNow(jwk: PublicJwk): string {
  const members = REQUIRED_MEMBERS[jwk.kty];
  if (!members) throw new Error(`unsupported JWK key type ${String(jwk.kty)}`);
  const canonical: Record<string, string> = {};
  for (const m of members) {
    const value = (jwk as unknown as Record<string, unknown>)[m];
    if (typeof value !== 'string' || value === '') throw new Error(`JWK member ${m} is missing`);
    canonical[m] = value;
  }
  return createHash('sha256').update(JSON.stringify(canonical)).digest('base64url');
}
