import { createPublicKey } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { KeywardenError } from '../../policy/errors';
import type { PublicJwk } from '../../policy/key';
import { CKK_EC_EDWARDS, EC_PARAMS, type CurveName } from './key-templates';

/** Raw public point length per curve: uncompressed 04||X||Y for NIST curves, 32 bytes for Ed25519. */
const POINT_BYTES: Readonly<Record<CurveName, number>> = { 'P-256': 65, 'P-384': 97, Ed25519: 32 };

/** The attributes `publicJwkFromAttributes` reads from a public key object. */
export const PUBLIC_KEY_ATTRIBUTES = {
  ec: [pkcs11js.CKA_EC_PARAMS, pkcs11js.CKA_EC_POINT],
  rsa: [pkcs11js.CKA_MODULUS, pkcs11js.CKA_PUBLIC_EXPONENT],
} as const;

/**
 * PKCS#11 3.0 also allows an Edwards curve's CKA_EC_PARAMS as a PrintableString naming it, and
 * SoftHSM 2.6 stores the private half of a key pair generated with the OID that way (the public
 * half keeps the OID): a process that did not generate the key must recognise both.
 */
const ED25519_PRINTABLE = Buffer.concat([Buffer.from([0x13, 12]), Buffer.from('edwards25519', 'ascii')]);

/** Names the curve of a DER CKA_EC_PARAMS, or null for curves keywarden does not use. */
export function curveOfParams(params: Buffer | undefined): CurveName | null {
  if (!params) return null;
  for (const [name, der] of Object.entries(EC_PARAMS) as [CurveName, Buffer][]) {
    if (der.equals(params)) return name;
  }
  if (ED25519_PRINTABLE.equals(params)) return 'Ed25519';
  return null;
}

/**
 * CKA_EC_POINT is specified as a DER OCTET STRING around the point (`04 len point`), but some
 * tokens return the bare point. This takes one TLV apart by hand: it is the only DER in the path,
 * and the result is checked by importing it into Node's crypto below.
 */
function unwrapEcPoint(value: Buffer, curve: CurveName): Buffer {
  const want = POINT_BYTES[curve];
  if (value.length >= 2 && value[0] === 0x04) {
    let len = value[1] ?? 0;
    let off = 2;
    if (len === 0x81) {
      len = value[2] ?? 0;
      off = 3;
    }
    if (len === want && value.length === off + len) return value.subarray(off);
  }
  if (value.length === want && (curve === 'Ed25519' || value[0] === 0x04)) return value;
  throw new KeywardenError('BACKEND_ERROR', `PKCS#11: CKA_EC_POINT for ${curve} has an unexpected encoding`);
}

const b64u = (b: Buffer): string => b.toString('base64url');

/** Strips leading zero bytes: JWK integers are minimal big-endian. */
function unsigned(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i += 1;
  return b.subarray(i);
}

/**
 * Builds a public JWK (public members only) from a public key object's attributes and checks it
 * imports, so a malformed point or modulus never reaches a JWKS.
 */
export function publicJwkFromAttributes(keyType: number, attrs: ReadonlyMap<number, Buffer>): PublicJwk {
  let jwk: PublicJwk;
  if (keyType === pkcs11js.CKK_RSA) {
    const n = attrs.get(pkcs11js.CKA_MODULUS);
    const e = attrs.get(pkcs11js.CKA_PUBLIC_EXPONENT);
    if (!n || !e)
      throw new KeywardenError('BACKEND_ERROR', 'PKCS#11: RSA public key lacks modulus or exponent');
    jwk = { kty: 'RSA', n: b64u(unsigned(n)), e: b64u(unsigned(e)) };
  } else if (keyType === pkcs11js.CKK_EC || keyType === CKK_EC_EDWARDS) {
    const curve = curveOfParams(attrs.get(pkcs11js.CKA_EC_PARAMS));
    const point = attrs.get(pkcs11js.CKA_EC_POINT);
    if (!curve || !point)
      throw new KeywardenError('BACKEND_ERROR', 'PKCS#11: EC key on an unsupported curve');
    const raw = unwrapEcPoint(point, curve);
    if (curve === 'Ed25519') {
      jwk = { kty: 'OKP', crv: 'Ed25519', x: b64u(raw) };
    } else {
      const size = (raw.length - 1) / 2;
      jwk = { kty: 'EC', crv: curve, x: b64u(raw.subarray(1, 1 + size)), y: b64u(raw.subarray(1 + size)) };
    }
  } else {
    throw new KeywardenError('BACKEND_ERROR', `PKCS#11: unsupported key type 0x${keyType.toString(16)}`);
  }
  try {
    createPublicKey({ key: { ...jwk }, format: 'jwk' });
  } catch (e) {
    throw new KeywardenError('BACKEND_ERROR', 'PKCS#11: the token returned an invalid public key', {
      cause: e,
    });
  }
  return jwk;
}

/** Reads a CK_ULONG attribute value (little-endian on the platforms pkcs11js supports). */
export function readUlong(b: Buffer | undefined): number | null {
  if (!b || b.length === 0) return null;
  return b.length >= 8 ? Number(b.readBigUInt64LE(0)) : b.readUIntLE(0, Math.min(b.length, 6));
}

/** Reads a CK_BBOOL attribute value. */
export function readBool(b: Buffer | undefined): boolean | undefined {
  return b && b.length > 0 ? b[0] !== 0 : undefined;
}
