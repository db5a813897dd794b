import {
  constants,
  verify,
  type KeyObject,
  type VerifyKeyObjectInput,
  type VerifyPublicKeyInput,
} from 'node:crypto';
import type { SigningAlg } from './algorithms.js';

const ES256_SIGNATURE_BYTES = 64;
const ES384_SIGNATURE_BYTES = 96;

/**
 * Verifies a JWS signature with node:crypto's callback form, which runs on libuv's thread pool:
 * the event loop stays free and both cores work under load (measured faster than WebCrypto,
 * which is what jose 6 uses). Resolves false, never rejects, for any mismatch of key and input.
 */
export function verifyJwsSignature(
  alg: SigningAlg,
  key: KeyObject,
  signingInput: Buffer,
  signature: Buffer,
): Promise<boolean> {
  let hash: string | null;
  let keyInput: VerifyKeyObjectInput | VerifyPublicKeyInput | KeyObject;
  switch (alg) {
    case 'ES256':
    case 'ES384':
      // JWS ECDSA signatures are raw r||s of a fixed size (RFC 7518 §3.4), not DER.
      if (signature.length !== (alg === 'ES256' ? ES256_SIGNATURE_BYTES : ES384_SIGNATURE_BYTES)) {
        return Promise.resolve(false);
      }
      hash = alg === 'ES256' ? 'sha256' : 'sha384';
      keyInput = { key, dsaEncoding: 'ieee-p1363' };
      break;
    case 'RS256':
      hash = 'sha256';
      keyInput = key;
      break;
    case 'PS256':
      // RFC 7518 §3.5: MGF1 with SHA-256 and a salt as long as the hash. Pinning the salt
      // length refuses signatures made with any other.
      hash = 'sha256';
      keyInput = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
      break;
    case 'EdDSA':
      hash = null;
      keyInput = key;
      break;
    default:
      return Promise.resolve(false);
  }
  return new Promise<boolean>((resolve) => {
    try {
      verify(hash, signingInput, keyInput, signature, (err, ok) => resolve(!err && ok === true));
    } catch {
      resolve(false);
    }
  });
}
