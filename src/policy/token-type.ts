/**
 * Explicit typing (RFC 8725 §3.11): what keywarden signs as `typ` and accepts as an expected
 * one. One definition, in the verify package the daemon and relying parties share.
 */
export { TOKEN_TYPE_RE, isTokenType, normalizeTokenType, tokenTypeProblem } from '@keywarden/verify';
