import { ServiceHealth } from '../lifecycle/service-health';
import { backendType } from '../backends/registry';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import type { KeywardenConfig } from '../policy/scope';
import {
  AUDIT_ACTOR,
  AUDIT_KEY_POLICY,
  AUDIT_SCOPE,
  auditKeyDestroyDueAt,
  auditScope,
  signingAuditKey,
} from '../policy/audit-key';
import { timelineForNewKey } from '../policy/timeline';
import { runLocked } from '../lifecycle/ports';
import type { StatementSigner } from './signature';
import type { LifecycleContext } from '../lifecycle/context';
import { destroyKeyObjects } from '../lifecycle/destroy-key';
import { generateKey, recoverGenerating } from '../lifecycle/generate-key';
import { judgeFacts, type SealedRow } from '../lifecycle/key-integrity';
import { legacyMismatch } from '../lifecycle/seal-legacy-keys';
import type { ClientTrust } from '../lifecycle/client-trust';
import type { RecordedStates } from '../lifecycle/recorded-states';
import type { KeyCache } from '../lifecycle/key-cache';

/** A new audit key is made when the current one has less than this left to sign. */
const RENEW_BEFORE_MS = 86400 * 1000;

/** What the audit use cases need: the lifecycle context minus the caches. */
export type AuditContext = Pick<
  LifecycleContext,
  'config' | 'clock' | 'log' | 'store' | 'keys' | 'lock' | 'audit' | 'auditRecords' | 'backend'
>;

/**
 * `config.audit.backend`, else the first backend whose type holds the audit key by default (a
 * PKCS#11 token); null when there is none.
 */
export function auditBackendName(config: Pick<KeywardenConfig, 'audit' | 'backends'>): string | null {
  if (config.audit.backend) return config.audit.backend;
  return Object.values(config.backends).find((b) => backendType(b.type).defaultForAuditKey)?.name ?? null;
}

/**
 * generateKey needs a LifecycleContext; the audit key is never cached, so the cache refuses use
 * (and so does the API client check, which generation never needs).
 */
function asLifecycleContext(actx: AuditContext): LifecycleContext {
  const refuse = <T extends object>(what: string) =>
    new Proxy({} as T, {
      get() {
        throw new KeywardenError('INTERNAL', `the audit key's generation does not use ${what}`);
      },
    });
  return {
    ...actx,
    cache: refuse<KeyCache>('the key cache'),
    clientTrust: refuse<ClientTrust>('API clients'),
    recordedStates: refuse<RecordedStates>("the scopes' recorded states"),
    // The audit key is no scope: its generation failures are logged, not a scope's readiness.
    health: new ServiceHealth(actx.clock),
  };
}

/** An audit key its backend vouches for; `legacy` when it was made before keys were sealed. */
export interface ConfirmedAuditKey {
  key: KeyRecord;
  legacy: boolean;
}

/**
 * Why the audit key row `key` is not vouched for by its backend, or how it is: its label names
 * the row, its public key is the row's, and its seal verifies over the row (judgeFacts); a key
 * made before sealing is confirmed as reconcile confirms a scope's (legacyMismatch) and reported
 * `legacy`. `_audit` rows never enter a key cache, so this is their integrity check. Throws when
 * the backend cannot be asked.
 */
export async function confirmAuditKey(
  actx: Pick<AuditContext, 'config' | 'backend'>,
  key: KeyRecord,
): Promise<{ ok: true; legacy: boolean } | { ok: false; message: string }> {
  const name = key.backendRef.backend;
  if (!actx.config.backends[name] || key.kid === null || key.publicJwk === null) {
    return { ok: false, message: `its backend ${name} is not configured, or the row has no public key` };
  }
  const backend = await actx.backend(name);
  const [answer] = await backend.inspectKeys([{ ref: key.backendRef, alg: key.alg }]);
  if (answer?.status !== 'found') {
    return {
      ok: false,
      message:
        answer?.status === 'unreadable' ? answer.problem : `backend ${name} holds no key at its reference`,
    };
  }
  const row = key as SealedRow;
  const judged = await judgeFacts(row, answer.facts);
  if (judged.ok) return { ok: true, legacy: false };
  if (judged.reason !== 'unsealed') return { ok: false, message: `${judged.reason}: ${judged.message}` };
  const mismatch = await legacyMismatch(row, answer.facts, auditScope(name));
  return mismatch
    ? { ok: false, message: `made before sealing, and ${mismatch}` }
    : { ok: true, legacy: true };
}

/**
 * The audit key that signs now (the latest active `_audit` row), confirmed against its backend,
 * or null when there is none. Fails closed: a row its backend does not vouch for (written into
 * the store, or edited) signs nothing, and nothing older stands in for it (KEY_NOT_USABLE).
 */
async function trustedSigningAuditKey(actx: AuditContext, now: Date): Promise<ConfirmedAuditKey | null> {
  const key = signingAuditKey(await actx.keys.listByScope(AUDIT_SCOPE), now);
  if (!key) return null;
  const c = await confirmAuditKey(actx, key);
  if (c.ok) return { key, legacy: c.legacy };
  actx.log.error(
    { kid: key.kid, keyId: key.id, detail: c.message },
    'audit key row refused: its backend does not vouch for it, so it signs nothing',
  );
  throw new KeywardenError(
    'KEY_NOT_USABLE',
    `audit key ${String(key.kid)} is not vouched for by its backend, so it signs nothing: ${c.message}`,
  );
}

/**
 * The audit key to sign with now, confirmed against its backend, generated in the audit backend
 * when there is none or the current one is about to stop signing. Generation runs under the
 * `_audit` lock, so concurrent daemons make one key, and uses the crash-safe generateKey (its
 * records land in the chain).
 */
export async function ensureAuditKey(actx: AuditContext): Promise<KeyRecord> {
  return (await ensureConfirmedAuditKey(actx)).key;
}

/** ensureAuditKey, saying whether the key was made before sealing (API client sealing seals it first). */
export async function ensureConfirmedAuditKey(actx: AuditContext): Promise<ConfirmedAuditKey> {
  const backendName = auditBackendName(actx.config);
  if (!backendName) {
    throw new KeywardenError(
      'CONFIG_INVALID',
      'no backend for the audit checkpoint key: set audit.backend or configure a pkcs11 backend',
    );
  }
  const fresh = (k: ConfirmedAuditKey | null, now: Date): k is ConfirmedAuditKey =>
    k !== null && k.key.retireAt.getTime() - now.getTime() > RENEW_BEFORE_MS;
  const current = await trustedSigningAuditKey(actx, actx.clock.now());
  if (fresh(current, actx.clock.now())) return current;
  return runLocked(actx.lock, AUDIT_SCOPE, async () => {
    const lc = asLifecycleContext(actx);
    const keys = await actx.keys.listByScope(AUDIT_SCOPE);
    // Generation only happens under this lock, so a `generating` row here is a crash leftover.
    for (const row of keys.filter((k) => k.status === 'generating')) {
      await recoverGenerating(lc, row, AUDIT_ACTOR);
    }
    const now = actx.clock.now();
    const again = await trustedSigningAuditKey(actx, now);
    if (fresh(again, now)) return again;
    const key = await generateKey(
      lc,
      auditScope(backendName),
      timelineForNewKey(AUDIT_KEY_POLICY, now, { immediate: true }),
      AUDIT_ACTOR,
      again ? 'audit key renewal' : 'first audit checkpoint key',
    );
    return { key, legacy: false };
  });
}

/** The audit key as a statement signer backed by its backend. */
export async function auditSigner(
  actx: Pick<AuditContext, 'backend'>,
  key: KeyRecord,
): Promise<StatementSigner> {
  const backend = await actx.backend(key.backendRef.backend);
  return {
    kid: key.kid as string,
    alg: key.alg,
    sign: (input) => backend.sign(key.backendRef, key.alg, input),
  };
}

/**
 * Destroys the objects of audit keys past their destroy time, except `keepKid` (the key that
 * signed the latest checkpoint, which `audit verify` checks against the HSM) and keys `stillNeeded`
 * names a reason to keep (API client seals made with them and not yet replaced: destroying the key
 * would refuse those clients). Never throws.
 */
export async function destroyRetiredAuditKeys(
  actx: AuditContext,
  keepKid: string | null,
  stillNeeded?: (key: KeyRecord) => Promise<string | null>,
): Promise<string[]> {
  const destroyed: string[] = [];
  const now = actx.clock.now();
  for (const k of await actx.keys.listByScope(AUDIT_SCOPE)) {
    if (k.status !== 'ready' || k.destroyedAt !== null || k.kid === keepKid) continue;
    if (auditKeyDestroyDueAt(k) > now) continue;
    const keep = await (stillNeeded?.(k) ?? Promise.resolve(null)).catch(
      (e: Error) => `cannot tell whether it is still needed: ${e.message}`,
    );
    if (keep) {
      actx.log.warn({ kid: k.kid, reason: keep }, 'a retired audit key is kept past its destroy time');
      continue;
    }
    try {
      await destroyKeyObjects(actx, k);
      await actx.store.transaction(async (tx) => {
        await tx.keys.markDestroyed(k.id, now);
        await tx.audit.record({ type: 'key.destroyed', actor: AUDIT_ACTOR, scope: AUDIT_SCOPE, kid: k.kid });
      });
      destroyed.push(k.kid as string);
    } catch (e) {
      actx.log.warn(
        { kid: k.kid, err: (e as Error).message },
        'destroying a retired audit key failed; retried later',
      );
    }
  }
  return destroyed;
}
