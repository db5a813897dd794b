/** One rotation policy and key records on its timeline, shared by the policy unit tests. */
import type { KeyRecord } from '../../../src/policy/key';
import type { KeyPolicy } from '../../../src/policy/scope';
import { timelineForNewKey } from '../../../src/policy/timeline';

export const policy: KeyPolicy = {
  prepublishSeconds: 100,
  activeForSeconds: 1000,
  verifyGraceSeconds: 200,
  maxTokenTtlSeconds: 200,
  destroyAfterSeconds: 50,
  maxKeyLifetimeSeconds: 1300,
  jwksMaxAgeSeconds: 50,
};
export const T = Date.UTC(2026, 0, 1);
/** The instant `s` seconds after T. */
export const at = (s: number) => new Date(T + s * 1000);
let n = 0;
/** A ready key that activates at second `activate` (published a prepublish before). */
export function key(activate: number, over: Partial<KeyRecord> = {}): KeyRecord {
  const tl = timelineForNewKey(policy, at(activate - 100), { immediate: false });
  n++;
  return {
    id: `k${n}`,
    kid: `kid${n}`,
    scope: 's',
    alg: 'ES256',
    status: 'ready',
    backendRef: { backend: 'hsm', ref: {} },
    publicJwk: null,
    ...tl,
    revokedAt: null,
    revokedReason: null,
    destroyedAt: null,
    createdAt: tl.publishAt,
    createdBy: 'test',
    ...over,
  };
}
