import { randomUUID } from 'node:crypto';
import type { KeyBackend } from '../backends/key-backend';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord, PublicJwk } from '../policy/key';
import { encodeSeal, sealInput, type SealedFacts } from '../policy/key-seal';
import type { ScopeConfig } from '../policy/scope';
import type { KeyTimeline } from '../policy/timeline';
import type { LifecycleContext } from './context';
import { destroyKeyObjects } from './destroy-key';
import { judgeFacts } from './key-integrity';
import { thumbprint } from '../policy/thumbprint';

/** Points in a key's generation where the test-only crash hook can kill the process. */
type CrashPoint = 'before-backend' | 'after-backend' | 'after-seal' | 'before-complete';

/**
 * TEST HOOK, inert in normal use: when the environment variable KEYWARDEN_TEST_CRASH_AT names
 * this point (`before-backend`: the `generating` row is committed, the backend not yet called;
 * `after-backend`: the backend made the key, it is not sealed yet; `after-seal`: the key is
 * sealed, the row not yet completed; `before-complete`: inside the completing transaction, before
 * it commits), and KEYWARDEN_TEST_CRASH_SCOPE is unset or names the key's scope (so a key made
 * for the audit log at the same time cannot take the crash), the process SIGKILLs itself there.
 * test/e2e/crash-safety.test.ts uses it to prove every interruption of a rotation is recovered.
 * Read nowhere else; any other value, or none, does nothing.
 */
function crashPointForTests(point: CrashPoint, scope: string): void {
  if (process.env.KEYWARDEN_TEST_CRASH_AT !== point) return;
  const only = process.env.KEYWARDEN_TEST_CRASH_SCOPE;
  if (only === undefined || only === scope) process.kill(process.pid, 'SIGKILL');
}

/**
 * Creates one key for `scope` with a fixed timeline. Crash-safe ordering:
 * 1. the row is written as `generating` with the backend address chosen up front;
 * 2. the backend generates the keypair there;
 * 3. the new key signs its own record (the seal, policy/key-seal.ts) inside the backend, and the
 *    seal is stored in the backend beside it, out of the store's reach;
 * 4. the row is completed with the public key and kid.
 * A crash between 1 and 4 leaves a `generating` row that reconcile finishes (the key is sealed
 * and its seal verifies over the row) or removes with its object. A failure removes the row and
 * any half-made object, then rethrows. Must run under the scope lock.
 */
export async function generateKey(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  timeline: KeyTimeline,
  actor: string,
  reason: string,
): Promise<KeyRecord> {
  try {
    const key = await generateKeyOnce(ctx, scope, timeline, actor, reason);
    ctx.health.generationSucceeded(scope.name);
    return key;
  } catch (e) {
    // Readiness reports a scope whose generations keep failing (service-health.ts).
    ctx.health.generationFailed(
      scope.name,
      e instanceof KeywardenError ? e.code : 'INTERNAL',
      (e as Error)?.message ?? String(e),
    );
    throw e;
  }
}

async function generateKeyOnce(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  timeline: KeyTimeline,
  actor: string,
  reason: string,
): Promise<KeyRecord> {
  const backend = await ctx.backend(scope.backend);
  const id = randomUUID();
  const ref = backend.planKey({ scope: scope.name, keyId: id });
  const now = ctx.clock.now();
  const row: KeyRecord = {
    id,
    kid: null,
    scope: scope.name,
    alg: scope.alg,
    status: 'generating',
    backendRef: ref,
    publicJwk: null,
    publishAt: timeline.publishAt,
    activateAt: timeline.activateAt,
    retireAt: timeline.retireAt,
    expiresAt: timeline.expiresAt,
    revokedAt: null,
    revokedReason: null,
    destroyedAt: null,
    createdAt: now,
    createdBy: actor,
  };
  await ctx.store.transaction(async (tx) => {
    await tx.keys.insertGenerating(row, now);
    await tx.audit.record({
      type: 'key.generating',
      actor,
      scope: scope.name,
      data: { keyId: id, reason, backend: backend.name },
    });
  });
  crashPointForTests('before-backend', scope.name);
  let sealed: SealedFacts;
  try {
    const generated = await backend.generate(ref, {
      alg: scope.alg,
      rsaBits: scope.rsaBits,
      scope: scope.name,
      keyId: id,
      notBefore: timeline.publishAt,
      notAfter: timeline.expiresAt,
    });
    crashPointForTests('after-backend', scope.name);
    sealed = await sealNewKey(backend, { ...row, backendRef: generated.ref }, generated.publicJwk);
  } catch (e) {
    await abandon(ctx, row, actor, e);
    throw e;
  }
  crashPointForTests('after-seal', scope.name);
  return completeKey(ctx, row, sealed.backendRef, sealed.publicJwk, actor, reason);
}

/** Step 3: the new key signs its own record, and the backend keeps the seal. */
async function sealNewKey(backend: KeyBackend, row: KeyRecord, publicJwk: PublicJwk): Promise<SealedFacts> {
  const facts: SealedFacts = { ...row, kid: await thumbprint(publicJwk), publicJwk };
  await sealKey(backend, facts);
  return facts;
}

/**
 * The key signs its own record (policy/key-seal.ts) and the backend stores that seal beside it,
 * once: for a new key, and for a key made before sealing once it is confirmed.
 */
export async function sealKey(backend: KeyBackend, facts: SealedFacts): Promise<void> {
  const signature = await backend.sign(facts.backendRef, facts.alg, sealInput(facts));
  await backend.attachSeal(facts.backendRef, encodeSeal(signature));
}

/** What recovering a crash leftover did. */
export type RecoveryOutcome = { outcome: 'completed'; key: KeyRecord } | { outcome: 'removed'; why: string };

/**
 * Finishes or removes a `generating` row a crash left behind. It is completed only when its key
 * exists, is sealed, and the seal verifies over the row (so a leftover edited in the store is
 * never completed); otherwise the object, if any, is destroyed and the row removed, and reconcile
 * makes a fresh key. Must run under the scope lock.
 */
export async function recoverGenerating(
  ctx: LifecycleContext,
  row: KeyRecord,
  actor: string,
): Promise<RecoveryOutcome> {
  const backend = await ctx.backend(row.backendRef.backend);
  const [answer] = await backend.inspectKeys([{ ref: row.backendRef, alg: row.alg }]);
  let why = 'interrupted before the backend created the key';
  if (answer?.status === 'found' && answer.facts.seal !== null) {
    const facts = answer.facts;
    const candidate = { ...row, kid: await thumbprint(facts.publicJwk), publicJwk: facts.publicJwk };
    const verdict = await judgeFacts(candidate, facts);
    if (verdict.ok) {
      const key = await completeKey(
        ctx,
        row,
        row.backendRef,
        facts.publicJwk,
        actor,
        'recovered after interruption',
      );
      return { outcome: 'completed', key };
    }
    why = `not completed: ${verdict.message}`;
  } else if (answer?.status === 'found') why = 'interrupted before the key was sealed';
  else if (answer?.status === 'unreadable') why = `its object is unusable: ${answer.problem}`;
  await abandon(ctx, row, actor, new Error(why));
  return { outcome: 'removed', why };
}

/** Step 3, also used by reconcile to finish a crash leftover whose object exists. */
export async function completeKey(
  ctx: LifecycleContext,
  row: KeyRecord,
  ref: KeyRecord['backendRef'],
  publicJwk: PublicJwk,
  actor: string,
  reason: string,
): Promise<KeyRecord> {
  const kid = await thumbprint(publicJwk);
  const now = ctx.clock.now();
  await ctx.store.transaction(async (tx) => {
    await tx.keys.completeGenerating(row.id, { kid, publicJwk, backendRef: ref }, now);
    await tx.audit.record({
      type: 'key.created',
      actor,
      scope: row.scope,
      kid,
      data: {
        keyId: row.id,
        reason,
        alg: row.alg,
        publishAt: row.publishAt.toISOString(),
        activateAt: row.activateAt.toISOString(),
        retireAt: row.retireAt.toISOString(),
        expiresAt: row.expiresAt.toISOString(),
      },
    });
    crashPointForTests('before-complete', row.scope);
  });
  ctx.log.info({ scope: row.scope, kid, reason, activateAt: row.activateAt }, 'key created');
  return { ...row, kid, publicJwk, backendRef: ref, status: 'ready' };
}

/**
 * Removes a failed generation: the backend objects if any (those labelled for this row: a
 * leftover row the store made up must not destroy another key), then the row.
 */
export async function abandon(
  ctx: LifecycleContext,
  row: KeyRecord,
  actor: string,
  cause: unknown,
): Promise<void> {
  try {
    await destroyKeyObjects(ctx, row);
  } catch (e) {
    // The row stays `generating`, so reconcile retries the cleanup; nothing is lost.
    ctx.log.warn(
      { scope: row.scope, keyId: row.id, err: (e as Error).message },
      'cleanup of failed key pending',
    );
    return;
  }
  await ctx.store.transaction(async (tx) => {
    await tx.keys.deleteGenerating(row.id);
    await tx.audit.record({
      type: 'key.generation-failed',
      actor,
      scope: row.scope,
      data: { keyId: row.id, error: (cause as Error)?.message ?? String(cause) },
    });
  });
}
