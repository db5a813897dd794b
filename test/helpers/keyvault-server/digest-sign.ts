import { createECDH, createHash, privateEncrypt, randomBytes, constants, type KeyObject } from 'node:crypto';

/**
 * Signs a precomputed digest the way Key Vault's `sign` operation does. Node's crypto API always
 * hashes the message itself, so the three schemes are assembled here from primitives Node does
 * expose: RSASSA-PKCS1-v1_5 = DigestInfo + private-key encryption with type-1 padding,
 * RSASSA-PSS = EMSA-PSS encoding (RFC 8017 §9.1.1) + raw RSA, ECDSA = the textbook formula with
 * kG computed by ECDH. This is test-server code: constant-time behaviour is not a goal.
 */
export type VaultSignAlg =
  'ES256' | 'ES384' | 'ES512' | 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512';

export const VAULT_SIGN_ALGS: readonly VaultSignAlg[] = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
];

type Hash = 'sha256' | 'sha384' | 'sha512';

const HASH_BYTES: Record<Hash, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** DER DigestInfo prefixes from RFC 8017 §9.2, note 1. */
const DIGEST_INFO_PREFIX: Record<Hash, Buffer> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

interface CurveParams {
  opensslName: string;
  order: bigint;
  bytes: number;
}

export const CURVES: Record<'P-256' | 'P-384' | 'P-521', CurveParams> = {
  'P-256': {
    opensslName: 'prime256v1',
    order: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    bytes: 32,
  },
  'P-384': {
    opensslName: 'secp384r1',
    order:
      0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    bytes: 48,
  },
  'P-521': {
    opensslName: 'secp521r1',
    order:
      0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
    bytes: 66,
  },
};

/** The curve (EC) or `RSA` an algorithm needs, and its digest length. */
export function algRequirements(alg: VaultSignAlg): {
  key: 'RSA' | keyof typeof CURVES;
  digestBytes: number;
} {
  const hash = hashOf(alg);
  if (alg === 'ES256') return { key: 'P-256', digestBytes: 32 };
  if (alg === 'ES384') return { key: 'P-384', digestBytes: 48 };
  if (alg === 'ES512') return { key: 'P-521', digestBytes: 64 };
  return { key: 'RSA', digestBytes: HASH_BYTES[hash] };
}

function hashOf(alg: VaultSignAlg): Hash {
  const bits = alg.slice(2);
  return bits === '256' ? 'sha256' : bits === '384' ? 'sha384' : 'sha512';
}

/** Signs `digest` with `privateKey` per `alg`. ECDSA signatures come back raw r||s, as Key Vault returns them. */
export function signDigest(alg: VaultSignAlg, privateKey: KeyObject, digest: Buffer): Buffer {
  const hash = hashOf(alg);
  if (alg.startsWith('RS')) {
    return privateEncrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([DIGEST_INFO_PREFIX[hash], digest]),
    );
  }
  if (alg.startsWith('PS')) {
    const modulusBits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
    const k = Math.ceil(modulusBits / 8);
    const em = emsaPssEncode(digest, modulusBits - 1, hash);
    const padded = Buffer.concat([Buffer.alloc(k - em.length), em]);
    return privateEncrypt({ key: privateKey, padding: constants.RSA_NO_PADDING }, padded);
  }
  const crv = algRequirements(alg).key as keyof typeof CURVES;
  return ecdsaSign(CURVES[crv], privateKey, digest);
}

function emsaPssEncode(mHash: Buffer, emBits: number, hash: Hash): Buffer {
  const hLen = HASH_BYTES[hash];
  const sLen = hLen;
  const emLen = Math.ceil(emBits / 8);
  const salt = randomBytes(sLen);
  const h = createHash(hash)
    .update(Buffer.concat([Buffer.alloc(8), mHash, salt]))
    .digest();
  const db = Buffer.concat([Buffer.alloc(emLen - sLen - hLen - 2), Buffer.from([1]), salt]);
  const mask = mgf1(h, emLen - hLen - 1, hash);
  for (let i = 0; i < db.length; i++) db[i] = (db[i] ?? 0) ^ (mask[i] ?? 0);
  db[0] = (db[0] ?? 0) & (0xff >> (8 * emLen - emBits));
  return Buffer.concat([db, h, Buffer.from([0xbc])]);
}

function mgf1(seed: Buffer, length: number, hash: Hash): Buffer {
  const out: Buffer[] = [];
  for (let counter = 0; out.length * HASH_BYTES[hash] < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    out.push(createHash(hash).update(seed).update(c).digest());
  }
  return Buffer.concat(out).subarray(0, length);
}

function ecdsaSign(curve: CurveParams, privateKey: KeyObject, digest: Buffer): Buffer {
  const jwk = privateKey.export({ format: 'jwk' });
  const d = toBigInt(Buffer.from(jwk.d ?? '', 'base64url'));
  const n = curve.order;
  const nBits = n.toString(2).length;
  let z = toBigInt(digest);
  if (digest.length * 8 > nBits) z >>= BigInt(digest.length * 8 - nBits);
  for (;;) {
    const k = toBigInt(randomBytes(curve.bytes + 8)) % n;
    if (k === 0n) continue;
    const ecdh = createECDH(curve.opensslName);
    ecdh.setPrivateKey(toFixedBytes(k, curve.bytes));
    const point = ecdh.getPublicKey();
    const r = toBigInt(point.subarray(1, 1 + curve.bytes)) % n;
    if (r === 0n) continue;
    const s = (modInverse(k, n) * ((z + r * d) % n)) % n;
    if (s === 0n) continue;
    return Buffer.concat([toFixedBytes(r, curve.bytes), toFixedBytes(s, curve.bytes)]);
  }
}

function toBigInt(bytes: Buffer): bigint {
  return bytes.length === 0 ? 0n : BigInt('0x' + bytes.toString('hex'));
}

function toFixedBytes(v: bigint, length: number): Buffer {
  return Buffer.from(v.toString(16).padStart(length * 2, '0'), 'hex');
}

function modInverse(a: bigint, m: bigint): bigint {
  let [oldR, r] = [((a % m) + m) % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return ((oldS % m) + m) % m;
}
