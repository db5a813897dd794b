/**
 * Why a token was refused. These codes are API: relying parties log and branch on them, the
 * server returns them from `/verify`, and docs/verify-library.md lists them. Add codes at the
 * end; never rename or reuse one.
 */
export const REASON_CODES = [
  'token_malformed',
  'token_too_large',
  'duplicate_member',
  'alg_forbidden',
  'header_forbidden',
  'crit_unsupported',
  'kid_missing',
  'kid_unknown',
  'kid_ambiguous',
  'alg_mismatch',
  'key_pending',
  'key_revoked',
  'key_expired',
  'signature_invalid',
  'claims_malformed',
  'issuer_mismatch',
  'audience_missing',
  'audience_mismatch',
  'exp_missing',
  'token_expired',
  'token_not_yet_valid',
  'iat_missing',
  'iat_in_future',
  'iat_outside_key_window',
  'exp_beyond_key_expiry',
  'jwks_unavailable',
  'typ_mismatch',
  'token_lifetime_exceeded',
] as const;

/** A stable, machine-readable reason a token was refused. */
export type ReasonCode = (typeof REASON_CODES)[number];

/** One-line human description of each reason code, for docs and messages. */
export const REASON_DESCRIPTIONS: Readonly<Record<ReasonCode, string>> = {
  token_malformed:
    'Not a compact JWS: not three base64url parts, bad base64url, or a header/payload that is not a JSON object.',
  token_too_large: 'The token is larger than the configured maximum size.',
  duplicate_member: 'The header or payload JSON repeats a member name (parsers disagree on which one wins).',
  alg_forbidden:
    'The header alg is not one of ES256, ES384, RS256, PS256, EdDSA (none and HMAC are refused).',
  header_forbidden: 'The header carries key material or a key location (jwk, jku, x5u, x5c, x5t, x5t#S256).',
  crit_unsupported: 'The header has a crit member; no critical extensions are supported.',
  kid_missing: 'The header has no kid (a non-empty string is required).',
  kid_unknown: "No key with this kid in the issuer's key set.",
  kid_ambiguous: "More than one key with this kid in the issuer's key set.",
  alg_mismatch: "The header alg differs from the key's algorithm.",
  key_pending: 'The key is published but not active yet; it cannot have signed anything.',
  key_revoked: 'The key was revoked.',
  key_expired: 'The key is past its expiry; nothing it signed is valid any more.',
  signature_invalid: 'The signature does not verify with the key.',
  claims_malformed:
    'A registered claim has the wrong type (iss/sub/jti strings, aud string or array, times numbers).',
  issuer_mismatch: 'The iss claim is missing or is not exactly the expected issuer.',
  audience_missing: 'The token has no aud claim.',
  audience_mismatch: 'The aud claim does not contain the expected audience.',
  exp_missing: 'The token has no exp claim.',
  token_expired: 'The token is past its exp (beyond the allowed clock skew).',
  token_not_yet_valid: 'The token nbf is in the future (beyond the allowed clock skew).',
  iat_missing: 'The token has no iat claim.',
  iat_in_future: 'The token iat is in the future (beyond the allowed clock skew).',
  iat_outside_key_window: 'The token iat is outside the period in which its key was active.',
  exp_beyond_key_expiry: "The token exp is later than its key's expiry.",
  jwks_unavailable:
    'The verification keys could not be obtained (discovery or JWKS fetch failed, or the key source errored).',
  typ_mismatch:
    'The header typ is not the token type the verifier expects (explicit typing: another kind of token from the same issuer).',
  token_lifetime_exceeded:
    "The token lifetime (exp - iat) is longer than its scope's maxTokenTtl plus the clock skew, or its key carries no valid bound.",
};

/** True for a string that is one of the reason codes. */
export function isReasonCode(v: unknown): v is ReasonCode {
  return typeof v === 'string' && (REASON_CODES as readonly string[]).includes(v);
}
