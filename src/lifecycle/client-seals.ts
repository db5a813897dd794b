import { createPublicKey } from 'node:crypto';
import {
  clientSealInput,
  decodeClientSeal,
  encodeClientSeal,
  type ClientSealFacts,
} from '../policy/client-seal';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { verifyJwsSignature } from './jws-signature';
import {
  auditBackendName,
  auditSigner,
  ensureConfirmedAuditKey,
  type AuditContext,
} from '../audit/audit-key';
import { AUDIT_SCOPE, signingAuditKey } from '../policy/audit-key';
import type { LifecycleContext } from './context';
import { sealKey } from './generate-key';
import type { SealedRow } from './key-integrity';

/** Actor of the seals the daemon renews itself. */
export const CLIENT_SEAL_ACTOR = 'system:client-seals';

/** The audit key as the sealer of client rows: its kid, and a seal over given facts. */
export interface ClientSealer {
  kid: string;
  /** The `seal` column's text for a row with these facts. */
  seal(facts: ClientSealFacts): Promise<string>;
}

/**
 * The audit key that seals API client rows now (ensureAuditKey: made or renewed as checkpoints do),
 * confirmed against its backend before it signs anything: label, public key and its own seal
 * (judgeFacts). An audit key made before keys were sealed is confirmed as reconcile confirms a
 * scope's legacy keys (legacyMismatch: label, public key, the validity recorded at creation, the
 * policy) and sealed once, first. Fails closed: no audit backend configured (CONFIG_INVALID), an
 * audit key its backend does not vouch for (KEY_NOT_USABLE), a backend that cannot be asked.
 */
export async function sealingAuditKey(ctx: LifecycleContext, actor: string): Promise<ClientSealer> {
  const backendName = auditBackendName(ctx.config);
  if (!backendName) {
    throw new KeywardenError(
      'CONFIG_INVALID',
      'API client rows are sealed by the audit key, an HSM key, and this config has no backend for it: ' +
        'set audit.backend or configure a pkcs11 backend (no client can be added or changed until then)',
    );
  }
  // Confirmed against its backend (ensureConfirmedAuditKey: label, public key, seal); one made
  // before keys were sealed is sealed first, once.
  const { key, legacy } = await ensureConfirmedAuditKey(ctx);
  if (legacy) {
    await sealKey(await ctx.backend(key.backendRef.backend), key as SealedRow);
    await ctx.audit.record({
      type: 'key.sealed',
      actor,
      scope: AUDIT_SCOPE,
      kid: key.kid,
      data: { keyId: key.id, reason: 'audit key made before sealing; confirmed against its backend' },
    });
    ctx.log.info({ kid: key.kid }, 'audit key made before sealing confirmed and sealed');
  }
  const signer = await auditSigner(ctx, key);
  return {
    kid: signer.kid,
    seal: async (facts) =>
      encodeClientSeal({
        kid: signer.kid,
        signature: Buffer.from(await signer.sign(clientSealInput(facts))),
      }),
  };
}

/** What one maintenance pass did. */
export interface ClientSealMaintenance {
  checked: number;
  refused: number;
  /** Names of clients whose seal was replaced by one of the current audit key. */
  resealed: string[];
}

/**
 * The scheduling process's pass over API clients (never on the request path): checks every row,
 * recording findings, then gives each client whose seal verifies but was made by an audit key that
 * no longer signs a new seal from the current one, before that key's objects are destroyed (30
 * days after it stops signing; destroyRetiredAuditKeys also keeps a key while a seal needs it).
 * Idempotent, and safe on several daemons at once: a seal is replaced only if it is still the one
 * that was checked (compare-and-set), and the new seal covers the checked content only.
 */
export async function maintainClientSeals(ctx: LifecycleContext): Promise<ClientSealMaintenance> {
  const repo = ctx.store.clients;
  const report = await ctx.clientTrust.check(await repo.scan());
  const result: ClientSealMaintenance = {
    checked: report.trusted.length + report.refused.length,
    refused: report.refused.length,
    resealed: [],
  };
  const current = signingAuditKey(await ctx.keys.listByScope(AUDIT_SCOPE), ctx.clock.now());
  const stale = report.trusted.filter((t) => t.kid !== current?.kid);
  if (stale.length === 0) return result;
  const sealer = await sealingAuditKey(ctx, CLIENT_SEAL_ACTOR);
  for (const { client, kid } of stale) {
    if (kid === sealer.kid) continue;
    try {
      const seal = await sealer.seal(client);
      if (!(await repo.replaceSeal(client.id, client.seal, seal))) continue;
      await ctx.audit.record({
        type: 'client.resealed',
        actor: CLIENT_SEAL_ACTOR,
        data: { clientId: client.id, name: client.name, previousKid: kid, kid: sealer.kid },
      });
      ctx.log.info(
        { client: client.name, previousKid: kid, kid: sealer.kid },
        'API client re-sealed by the current audit key',
      );
      result.resealed.push(client.name);
    } catch (e) {
      ctx.log.warn(
        { client: client.name, err: (e as Error).message },
        're-sealing an API client failed; retried at the next pass',
      );
    }
  }
  return result;
}

/**
 * Why the retired audit key `key` must not be destroyed yet, or null: API client rows whose seal
 * it made still verify over them (with its public key read from its backend), so destroying it
 * would refuse them. Rows whose seal does not verify do not hold it back (they are refused anyway).
 */
export async function auditKeyNeededByClients(
  actx: Pick<AuditContext, 'store' | 'backend'>,
  key: KeyRecord,
): Promise<string | null> {
  const rows = (await actx.store.clients.scan()).filter((r) => decodeClientSeal(r.seal)?.kid === key.kid);
  if (rows.length === 0) return null;
  const backend = await actx.backend(key.backendRef.backend);
  const publicKey = createPublicKey({
    key: { ...(await backend.publicKey(key.backendRef, key.alg)) },
    format: 'jwk',
  });
  const needing: string[] = [];
  for (const r of rows) {
    const seal = decodeClientSeal(r.seal)!;
    let input: Buffer;
    try {
      input = clientSealInput(r);
    } catch {
      continue;
    }
    if (await verifyJwsSignature(key.alg, publicKey, input, seal.signature)) needing.push(r.name);
  }
  if (needing.length === 0) return null;
  return (
    `${needing.length} API client seal(s) it made are not replaced yet (${needing.slice(0, 5).join(', ')}` +
    `${needing.length > 5 ? ', ...' : ''}): the daemon re-seals them; \`keywarden clients seal --all\` does it now`
  );
}
