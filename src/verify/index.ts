/**
 * keywarden/verify: complete token validation (I6) for relying parties and for the server.
 * There is no signature-only call: every path checks alg, kid in scope, key state, iss, aud,
 * exp/nbf/iat and that the token was issued while its key was active.
 */
export { createVerifier, DEFAULT_MAX_CACHE_SECONDS, DEFAULT_REFETCH_PER_MINUTE } from './create-verifier';
export type { Verifier, VerifierOptions } from './create-verifier';
export type { TrustedCa } from './ca-fetch';
export {
  validateToken,
  DEFAULT_CLOCK_SKEW_SECONDS,
  DEFAULT_MAX_TOKEN_BYTES,
  MAX_CLOCK_SKEW_SECONDS,
} from './validate-token';
export type {
  KeyLookup,
  ProtectedHeader,
  ValidationOptions,
  ValidationResult,
  VerificationKey,
  VerifiedClaims,
} from './validate-token';
export { REASON_CODES, REASON_DESCRIPTIONS, isReasonCode } from './reasons';
export type { ReasonCode } from './reasons';
export { inspectJwks, parseJwks, toPublishedJwk, toPublishedJwks, PRIVATE_JWK_MEMBERS } from './jwks';
export type { IgnoredJwk, JwksInspection, PublishableKey, PublishedJwk, PublishedJwks } from './jwks';
export { importVerificationKey, MIN_RSA_MODULUS_BITS } from './import-key';
export type { ImportResult, VerificationKeyInput } from './import-key';
export type { Clock } from '../policy/clock';
