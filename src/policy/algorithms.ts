/** The JWS algorithms keywarden issues. HMAC and `none` are absent on purpose. */
export const SIGNING_ALGS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

export function isSigningAlg(v: unknown): v is SigningAlg {
  return typeof v === 'string' && (SIGNING_ALGS as readonly string[]).includes(v);
}

/** Key parameters per algorithm. RSA size is chosen per scope (2048 or 3072). */
export type KeySpec =
  | { kty: 'EC'; crv: 'P-256' | 'P-384'; hash: 'sha256' | 'sha384'; signatureBytes: number }
  | { kty: 'RSA'; hash: 'sha256'; pss: boolean }
  | { kty: 'OKP'; crv: 'Ed25519' };

export function keySpecFor(alg: SigningAlg): KeySpec {
  switch (alg) {
    case 'ES256':
      return { kty: 'EC', crv: 'P-256', hash: 'sha256', signatureBytes: 64 };
    case 'ES384':
      return { kty: 'EC', crv: 'P-384', hash: 'sha384', signatureBytes: 96 };
    case 'RS256':
      return { kty: 'RSA', hash: 'sha256', pss: false };
    case 'PS256':
      return { kty: 'RSA', hash: 'sha256', pss: true };
    case 'EdDSA':
      return { kty: 'OKP', crv: 'Ed25519' };
  }
}

export const RSA_MODULUS_BITS = [2048, 3072] as const;
export type RsaModulusBits = (typeof RSA_MODULUS_BITS)[number];
