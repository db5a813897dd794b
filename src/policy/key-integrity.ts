import { isSigningAlg } from './algorithms';
import type { KeyRecord } from './key';
import { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS, type KeyPolicy } from './scope';

/**
 * Why a key row is not trusted (see docs/security-model.md). A refused row is never published,
 * signed with or accepted for verification, in any process.
 */
export const KEY_REFUSAL_REASONS = [
  /** The backend holds no seal for the key: made before sealing and not yet confirmed, or never completed. */
  'unsealed',
  /** The seal does not verify over the row's facts: scope, times, alg or reference were changed. */
  'seal-invalid',
  /** The backend has no private key object at the row's reference (made-up row, or revoked and destroyed). */
  'object-missing',
  /** The row's public key or kid is not the backend object's. */
  'public-key-mismatch',
  /** The backend object belongs to another scope or key row (its label or tags say so). */
  'label-mismatch',
  /** The row breaks its scope's policy or the absolute ceiling (I1), sealed or not. */
  'policy-violation',
  /** The row names a backend the config does not have. */
  'backend-unknown',
  /** The backend could not be asked; rows confirmed before stay trusted, new ones wait. */
  'backend-unavailable',
  /** A legacy key whose confirmation against the backend failed: it is never sealed. */
  'legacy-mismatch',
] as const;
export type KeyRefusalReason = (typeof KEY_REFUSAL_REASONS)[number];

/** One row that is not trusted, and why (never key material). */
export interface KeyRefusal {
  keyId: string;
  kid: string | null;
  scope: string;
  backend: string;
  reason: KeyRefusalReason;
  message: string;
}

/**
 * Problems of a key's timeline under its scope's policy, re-checked every time a row is loaded
 * (a sealed key stays bound by today's policy and by the ceiling in code). Empty when none.
 */
export function keyPolicyProblems(
  key: Pick<KeyRecord, 'alg' | 'publishAt' | 'activateAt' | 'retireAt' | 'expiresAt'>,
  policy: Pick<KeyPolicy, 'maxKeyLifetimeSeconds'>,
): string[] {
  const problems: string[] = [];
  const t = [key.publishAt, key.activateAt, key.retireAt, key.expiresAt].map((d) => d.getTime());
  if (t.some((ms) => !Number.isFinite(ms))) return ['a lifecycle instant is not a valid time'];
  const [publish, activate, retire, expires] = t as [number, number, number, number];
  if (!(publish <= activate && activate <= retire && retire <= expires)) {
    problems.push('its instants are out of order (publish <= activate <= retire <= expire)');
  }
  const lifetimeSeconds = (expires - publish) / 1000;
  const limit = Math.min(policy.maxKeyLifetimeSeconds, ABSOLUTE_MAX_KEY_LIFETIME_SECONDS);
  if (lifetimeSeconds > limit) {
    problems.push(
      `its lifetime of ${lifetimeSeconds} s exceeds ${limit} s (maxKeyLifetime, at most 400 days)`,
    );
  }
  if (!isSigningAlg(key.alg)) problems.push(`alg ${JSON.stringify(key.alg)} is not allowed`);
  return problems;
}
