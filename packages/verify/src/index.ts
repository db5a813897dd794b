/**
 * @keywarden/verify: complete token validation (I6) for relying parties and for the keywarden
 * daemon, which validates with this same code. There is no signature-only call: every path
 * checks alg, kid in scope, key state, iss, aud, exp/nbf/iat, that the token was issued while
 * its key was active and that it lives no longer than its scope's maxTokenTtl.
 */
export { createVerifier, DEFAULT_MAX_CACHE_SECONDS, DEFAULT_REFETCH_PER_MINUTE } from './create-verifier.js';
export type { KeyEventsStatus, Verifier, VerifierOptions } from './create-verifier.js';
export type { TrustedCa } from './ca-fetch.js';
export {
  validateToken,
  DEFAULT_CLOCK_SKEW_SECONDS,
  DEFAULT_MAX_TOKEN_BYTES,
  MAX_CLOCK_SKEW_SECONDS,
} from './validate-token.js';
export type {
  JwtClaims,
  KeyLookup,
  ProtectedHeader,
  ValidationOptions,
  ValidationResult,
  VerificationKey,
  VerifiedClaims,
} from './validate-token.js';
export { REASON_CODES, REASON_DESCRIPTIONS, isReasonCode } from './reasons.js';
export type { ReasonCode } from './reasons.js';
export { inspectJwks, parseJwks, toPublishedJwk, toPublishedJwks, PRIVATE_JWK_MEMBERS } from './jwks.js';
export type { IgnoredJwk, JwksInspection, PublishableKey, PublishedJwk, PublishedJwks } from './jwks.js';
export { importVerificationKey, MIN_RSA_MODULUS_BITS } from './import-key.js';
export type { ImportResult, VerificationKeyInput } from './import-key.js';
export { KeySetError } from './errors.js';
export type { KeySetErrorCode } from './errors.js';
export { SIGNING_ALGS, isSigningAlg, keySpecFor, ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from './algorithms.js';
export type { KeySpec, SigningAlg } from './algorithms.js';
export { effectiveState } from './key-state.js';
export type { KeyState, KeyStateTimes } from './key-state.js';
export { TOKEN_TYPE_RE, isTokenType, normalizeTokenType, tokenTypeProblem } from './token-type.js';
export { systemClock } from './clock.js';
export type { Clock } from './clock.js';
export type { PublicJwk } from './public-jwk.js';
export { KEY_EVENT_NAME, formatKeyEvent, parseKeyEvent } from './key-events.js';
export type { KeyEvent } from './key-events.js';
