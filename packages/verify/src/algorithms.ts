/** The JWS algorithms keywarden issues and accepts. HMAC and `none` are absent on purpose. */
export const SIGNING_ALGS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const;
/** One of SIGNING_ALGS. */
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** True for a string that is one of SIGNING_ALGS. */
export function isSigningAlg(v: unknown): v is SigningAlg {
  return typeof v === 'string' && (SIGNING_ALGS as readonly string[]).includes(v);
}

/** Key parameters per algorithm. RSA size is chosen per scope (2048 or 3072). */
export type KeySpec =
  | { kty: 'EC'; crv: 'P-256' | 'P-384'; hash: 'sha256' | 'sha384'; signatureBytes: number }
  | { kty: 'RSA'; hash: 'sha256'; pss: boolean }
  | { kty: 'OKP'; crv: 'Ed25519' };

/** The key type, curve and hash an algorithm needs: a key of another kind never verifies it. */
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

/** Absolute ceiling on any key's lifetime (I1): 400 days. A constant in code, not configurable. */
export const ABSOLUTE_MAX_KEY_LIFETIME_SECONDS = 400 * 86400;
