import type { BackendKeyFacts } from '../backends/key-backend';
import { keyPolicyProblems } from '../policy/key-integrity';
import type { ScopeConfig } from '../policy/scope';
import type { LifecycleContext } from './context';
import { sealKey } from './generate-key';
import { judgeIdentity, type SealedRow } from './key-integrity';

/** What sealing a scope's keys made before sealing did. */
export interface LegacySealReport {
  sealed: string[];
  /** Keys whose confirmation failed: never sealed, refused until they expire or are revoked. */
  refused: { kid: string | null; message: string }[];
}

/** UTC calendar day, as a PKCS#11 CK_DATE records it. */
const day = (d: Date): string => d.toISOString().slice(0, 10);

/**
 * Why a key made before sealing cannot be confirmed by its backend, or null when it can: its
 * label names the row, its public key is the row's, the validity the backend recorded at creation
 * matches the row's publish and expiry instants (to the day on PKCS#11, where CK_DATE has no time;
 * to the second on Key Vault), and the row keeps its scope's policy.
 */
export async function legacyMismatch(
  row: SealedRow,
  facts: BackendKeyFacts,
  scope: ScopeConfig,
): Promise<string | null> {
  const identity = await judgeIdentity(row, facts);
  if (!identity.ok) return identity.message;
  const { notBefore, notAfter, precision } = facts.validity;
  if (!notBefore || !notAfter)
    return 'the backend recorded no validity for the key, so its times cannot be confirmed';
  const same =
    precision === 'day'
      ? (a: Date, b: Date) => day(a) === day(b)
      : (a: Date, b: Date) => Math.floor(a.getTime() / 1000) === Math.floor(b.getTime() / 1000);
  if (!same(row.publishAt, notBefore) || !same(row.expiresAt, notAfter)) {
    return (
      `the row's publish/expiry (${row.publishAt.toISOString()} / ${row.expiresAt.toISOString()}) are not ` +
      `the validity the backend recorded (${notBefore.toISOString()} / ${notAfter.toISOString()}, ${precision} precision)`
    );
  }
  const problems = keyPolicyProblems(row, scope.policy);
  return problems.length > 0 ? problems.join('; ') : null;
}

/**
 * Upgrading a store made before keys were sealed (docs/security-model.md#upgrading): every live
 * key of the scope the integrity check found unsealed is confirmed against its backend
 * (`legacyMismatch`) and then signs its own record like a new key, once: the seal lives in the
 * backend, so a key can never be sealed again, and one that fails confirmation is never sealed.
 * Must run under the scope lock.
 */
export async function sealLegacyKeys(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  actor: string,
): Promise<LegacySealReport> {
  const report: LegacySealReport = { sealed: [], refused: [] };
  const unsealed = new Set(ctx.cache.integrity.refusedIn(scope.name, 'unsealed').map((r) => r.keyId));
  if (unsealed.size === 0) return report;
  const rows = (await ctx.keys.listByScope(scope.name)).filter(
    (k): k is SealedRow =>
      unsealed.has(k.id) && k.status === 'ready' && k.kid !== null && k.publicJwk !== null,
  );
  // One inspection per backend for all its rows: inspectKeys lists the backend's objects once
  // however many keys are asked.
  const byBackend = new Map<string, SealedRow[]>();
  for (const row of rows)
    byBackend.set(row.backendRef.backend, [...(byBackend.get(row.backendRef.backend) ?? []), row]);
  for (const [name, list] of byBackend) {
    const backend = await ctx.backend(name);
    const answers = await backend.inspectKeys(list.map((row) => ({ ref: row.backendRef, alg: row.alg })));
    for (const [i, row] of list.entries()) {
      const answer = answers[i];
      // Gone, unusable, or sealed by another daemon meanwhile: the next check reports it as it is.
      if (answer?.status !== 'found' || answer.facts.seal !== null) continue;
      const mismatch = await legacyMismatch(row, answer.facts, scope);
      if (mismatch) {
        ctx.cache.integrity.noteLegacyMismatch(row, backend.refIdentity(row.backendRef), mismatch);
        report.refused.push({ kid: row.kid, message: mismatch });
        ctx.log.error(
          { scope: scope.name, kid: row.kid, keyId: row.id, detail: mismatch },
          'key made before sealing does not match its backend: refused, never sealed',
        );
        await ctx.audit.record({
          type: 'key.seal-refused',
          actor,
          scope: scope.name,
          kid: row.kid,
          data: { keyId: row.id, detail: mismatch },
        });
        continue;
      }
      await sealKey(backend, row);
      await ctx.audit.record({
        type: 'key.sealed',
        actor,
        scope: scope.name,
        kid: row.kid,
        data: { keyId: row.id, reason: 'made before sealing; confirmed against its backend' },
      });
      ctx.log.info({ scope: scope.name, kid: row.kid }, 'key made before sealing confirmed and sealed');
      report.sealed.push(row.kid);
    }
  }
  return report;
}
