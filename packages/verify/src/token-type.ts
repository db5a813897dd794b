/**
 * Explicit typing (RFC 8725 §3.11): a relying party that expects one kind of token (say
 * `at+jwt` access tokens, RFC 9068) refuses another kind signed by the same issuer, such as an
 * ID token or a token some other client minted for another purpose with the same keys.
 */

/**
 * What keywarden signs as `typ` and accepts as an expected one: a short media type, with or
 * without its `application/` (JWT, at+jwt, application/at+jwt): ASCII, at most 64 characters,
 * one optional `type/` before the subtype, no spaces or parameters.
 */
export const TOKEN_TYPE_RE = /^(?=.{1,64}$)[A-Za-z0-9.+-]+(?:\/[A-Za-z0-9.+-]+)?$/;

/**
 * A `typ` value in the form two values are compared in: media types are case-insensitive, and a
 * value without a `/` means `application/` + value (RFC 7515 §4.1.9), so `at+jwt`,
 * `AT+JWT` and `application/at+jwt` are one type.
 */
export function normalizeTokenType(typ: string): string {
  // Only ever given TOKEN_TYPE_RE's ASCII: Unicode case folding would equate more than ASCII's
  // (the Kelvin sign lowercases to k).
  const lower = typ.toLowerCase();
  return lower.includes('/') ? lower : `application/${lower}`;
}

/** Whether a header's `typ` (any JSON value, or absent) is the `expected` type. */
export function isTokenType(headerTyp: unknown, expected: string): boolean {
  return (
    typeof headerTyp === 'string' &&
    TOKEN_TYPE_RE.test(headerTyp) &&
    normalizeTokenType(headerTyp) === normalizeTokenType(expected)
  );
}

/** Why `typ` cannot be an expected token type, or undefined if it can. */
export function tokenTypeProblem(typ: unknown): string | undefined {
  if (typeof typ === 'string' && TOKEN_TYPE_RE.test(typ)) return undefined;
  return `typ must be a media type of at most 64 characters such as at+jwt or application/at+jwt (got ${JSON.stringify(typ)})`;
}
