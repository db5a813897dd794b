import { calculateJwkThumbprint } from 'jose';
import type { PublicJwk } from '../policy/key';

/** RFC 7638 JWK thumbprint (base64url SHA-256): the kid of every keywarden key. */
export function thumbprint(jwk: PublicJwk): Promise<string> {
  return calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0], 'sha256');
}
