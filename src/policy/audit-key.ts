import type { SigningAlg } from './algorithms';
import type { KeyRecord } from './key';
import { effectiveState } from './key-state';
import type { KeyPolicy, ScopeConfig } from './scope';
import { destroyDueAt } from './timeline';

/**
 * The audit checkpoint key lives in its own scope-like lifecycle. `_audit` cannot be a configured
 * scope (scope names are slugs without `_`), so the key never enters a key cache view, a JWKS,
 * the sign path or token verification.
 */
export const AUDIT_SCOPE = '_audit';
/** Actor of records the audit machinery writes itself. */
export const AUDIT_ACTOR = 'system:audit';
export const AUDIT_KEY_ALG: SigningAlg = 'ES256';

/**
 * The audit key signs checkpoints for 90 days, then a new one takes over; checkpoints stay
 * verifiable from the stored public key. The object is destroyed 30 days after it stops signing.
 */
export const AUDIT_KEY_POLICY: KeyPolicy = {
  prepublishSeconds: 0,
  activeForSeconds: 90 * 86400,
  verifyGraceSeconds: 86400,
  maxTokenTtlSeconds: 60,
  destroyAfterSeconds: 30 * 86400,
  maxKeyLifetimeSeconds: 91 * 86400,
  jwksMaxAgeSeconds: 60,
};

/** The scope-like config of the `_audit` lifecycle on `backend` (its policy is AUDIT_KEY_POLICY). */
export function auditScope(backend: string): ScopeConfig {
  return {
    name: AUDIT_SCOPE,
    issuer: 'urn:keywarden:audit',
    audiences: [],
    alg: AUDIT_KEY_ALG,
    rsaBits: 2048,
    backend,
    schedule: '',
    production: true,
    policy: AUDIT_KEY_POLICY,
  };
}

/** The audit key that signs at `now` (the latest activated one), or null. */
export function signingAuditKey(keys: readonly KeyRecord[], now: Date): KeyRecord | null {
  let best: KeyRecord | null = null;
  for (const k of keys) {
    if (k.status !== 'ready' || k.kid === null || k.publicJwk === null) continue;
    if (effectiveState(k, now) !== 'active') continue;
    if (!best || k.activateAt > best.activateAt) best = k;
  }
  return best;
}

/** When an audit key's backend object is due for destruction. */
export function auditKeyDestroyDueAt(key: Pick<KeyRecord, 'expiresAt' | 'revokedAt'>): Date {
  return destroyDueAt(AUDIT_KEY_POLICY, key);
}
