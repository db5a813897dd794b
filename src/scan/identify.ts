import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { PublicJwk } from '../policy/key';
import { thumbprint } from '../policy/thumbprint';
import { keyTypeOfJwk, matchOf, type KnownKeyIndex } from './known-keys';
import type { Finding } from './types';

/** What a finder hands over: where, how encoded, and the parsed key (or null when encrypted). */
export interface Hit {
  offset: number;
  length: number;
  encoding: Finding['encoding'];
  /** The parsed private key; null for encrypted material. */
  privateKey: KeyObject | null;
  /** Public JWK stored beside encrypted material (OpenSSH keeps it in clear), if any. */
  publicJwk?: JWK;
}

/** The identity part of a finding: type, thumbprint of the public half, matching known key. */
export type Identity = Pick<Finding, 'keyType' | 'fingerprint' | 'match'>;

/**
 * Derives the public key from a parsed private key (never trusting a public key stored next
 * to it), then looks its thumbprint up among the known keys. Keys without a JWK form (e.g. DSA)
 * get no fingerprint and cannot match: keywarden only manages JWK-expressible keys.
 */
export async function identify(hit: Hit, index: KnownKeyIndex): Promise<Identity> {
  let jwk: JWK | undefined = hit.publicJwk;
  let fallbackType = 'unknown';
  if (hit.privateKey !== null) {
    fallbackType = hit.privateKey.asymmetricKeyType ?? 'unknown';
    try {
      jwk = createPublicKey(hit.privateKey).export({ format: 'jwk' }) as JWK;
    } catch {
      jwk = undefined;
    }
  }
  if (jwk === undefined) return { keyType: fallbackType, fingerprint: null, match: null };
  const fingerprint = await thumbprint(jwk as PublicJwk);
  return { keyType: keyTypeOfJwk(jwk), fingerprint, match: matchOf(index.byThumbprint.get(fingerprint)) };
}
