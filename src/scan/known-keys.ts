import type { JWK } from 'jose';
import type { PublicJwk } from '../policy/key';
import { thumbprint } from '../policy/thumbprint';
import type { KnownKey } from './types';

/** A known key with its precomputed RFC 7638 thumbprint and display type. */
export interface IndexedKey {
  key: KnownKey;
  fingerprint: string;
  keyType: string;
}

/** A known RSA key reduced to what the raw prime search needs. */
export interface KnownModulus {
  n: bigint;
  /** Byte length of each prime factor (half the modulus length). */
  primeBytes: number;
  entry: IndexedKey;
}

/**
 * Known public keys, indexed the ways the finders look them up: by thumbprint (for parsed
 * private keys), by public point X coordinate per curve (for raw scalars: one hash lookup per
 * candidate instead of one comparison per key), and as BigInt moduli for RSA primes.
 */
export interface KnownKeyIndex {
  byThumbprint: Map<string, IndexedKey>;
  /** X coordinate (latin1 string of the raw bytes) -> key, per curve. */
  p256: Map<string, IndexedKey>;
  p384: Map<string, IndexedKey>;
  /** Ed25519 public key (base64url) -> key. */
  ed25519: Map<string, IndexedKey>;
  rsa: KnownModulus[];
}

/** Human key type, e.g. `EC P-256`, `RSA 2048`, `Ed25519`. */
export function keyTypeOfJwk(jwk: PublicJwk | JWK): string {
  if (jwk.kty === 'RSA' && typeof jwk.n === 'string') return `RSA ${b64(jwk.n).length * 8}`;
  if (jwk.kty === 'EC') return `EC ${jwk.crv ?? '?'}`;
  if (jwk.kty === 'OKP') return String(jwk.crv ?? 'OKP');
  return String(jwk.kty);
}

function b64(s: string): Buffer {
  return Buffer.from(s, 'base64url');
}

/** Builds the lookup index once per scan. */
export async function indexKnownKeys(keys: readonly KnownKey[]): Promise<KnownKeyIndex> {
  const index: KnownKeyIndex = {
    byThumbprint: new Map(),
    p256: new Map(),
    p384: new Map(),
    ed25519: new Map(),
    rsa: [],
  };
  for (const key of keys) {
    const jwk = key.publicJwk;
    const entry: IndexedKey = {
      key,
      fingerprint: await thumbprint(jwk as PublicJwk),
      keyType: keyTypeOfJwk(jwk),
    };
    index.byThumbprint.set(entry.fingerprint, entry);
    if (jwk.kty === 'EC' && jwk.x !== undefined) {
      const x = b64(jwk.x).toString('latin1');
      if (jwk.crv === 'P-256') index.p256.set(x, entry);
      if (jwk.crv === 'P-384') index.p384.set(x, entry);
    } else if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && jwk.x !== undefined) {
      index.ed25519.set(jwk.x, entry);
    } else if (jwk.kty === 'RSA' && jwk.n !== undefined) {
      const nBytes = b64(jwk.n);
      index.rsa.push({
        n: BigInt('0x' + nBytes.toString('hex')),
        primeBytes: Math.ceil(nBytes.length / 2),
        entry,
      });
    }
  }
  return index;
}

/** The `match` member of a finding for an indexed key. */
export function matchOf(entry: IndexedKey | undefined): { kid: string; scope: string; state: string } | null {
  return entry === undefined ? null : { kid: entry.key.kid, scope: entry.key.scope, state: entry.key.state };
}
