import type { JsonWebKey } from '@azure/keyvault-keys';
import { keySpecFor, type SigningAlg } from '../../policy/algorithms';
import { KeywardenError } from '../../policy/errors';
import type { PublicJwk } from '../../policy/key';

const CURVE_BYTES: Readonly<Record<string, number>> = { 'P-256': 32, 'P-384': 48 };

/**
 * Builds keywarden's public JWK from the SDK's key: only kty/crv/x/y or kty/n/e are copied (an
 * allowlist, so a private member could never leak even if a vault sent one), `EC-HSM`/`RSA-HSM`
 * become `EC`/`RSA`, and the SDK's Uint8Array members become base64url. It also checks the key
 * fits `alg` (curve, key type), so a mix-up surfaces here and not as a bad signature later.
 */
export function toPublicJwk(key: JsonWebKey | undefined, alg: SigningAlg, what: string): PublicJwk {
  const spec = keySpecFor(alg);
  const kty = key?.kty?.replace(/-HSM$/, '');
  if (spec.kty === 'EC') {
    if (kty !== 'EC' || key?.crv !== spec.crv) {
      throw mismatch(what, alg, key);
    }
    const size = CURVE_BYTES[spec.crv] ?? 0;
    return { kty: 'EC', crv: spec.crv, x: coordinate(key.x, size, what), y: coordinate(key.y, size, what) };
  }
  if (spec.kty === 'RSA') {
    if (kty !== 'RSA' || !key?.n || !key.e) throw mismatch(what, alg, key);
    return { kty: 'RSA', n: unsignedB64u(key.n), e: unsignedB64u(key.e) };
  }
  throw new KeywardenError('BACKEND_MECHANISM_UNSUPPORTED', `${what}: Azure Key Vault has no ${alg} keys`);
}

/** EC coordinates are fixed-width: left-pad a short one (a leading zero the encoder dropped). */
function coordinate(v: Uint8Array | undefined, size: number, what: string): string {
  if (!v || v.length === 0 || v.length > size) {
    throw new KeywardenError('BACKEND_ERROR', `${what}: the vault returned a malformed EC public key`);
  }
  const out = Buffer.alloc(size);
  Buffer.from(v).copy(out, size - v.length);
  return out.toString('base64url');
}

/** RSA integers in a JWK carry no leading zero octets (RFC 7518 §6.3.1); some encoders add one. */
function unsignedB64u(v: Uint8Array): string {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  return Buffer.from(v.subarray(i)).toString('base64url');
}

function mismatch(what: string, alg: SigningAlg, key: JsonWebKey | undefined): KeywardenError {
  const desc = key ? `${key.kty ?? '?'}${key.crv ? ` ${key.crv}` : ''}` : 'no public key';
  return new KeywardenError('BACKEND_ERROR', `${what}: the vault key is ${desc}, which cannot sign ${alg}`);
}
