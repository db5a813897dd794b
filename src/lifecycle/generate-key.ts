import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import type { KeyBackend } from '../backends/key-backend';
import type { KeyRecord, PublicJwk } from '../policy/key';
import type { ScopeConfig } from '../policy/scope';
import type { KeyTimeline } from '../policy/timeline';
import type { LifecycleContext } from './context';

/** Points in a key's generation where the test-only crash hook can kill the process. */
type CrashPoint = 'before-backend' | 'after-backend' | 'before-complete';

/**
 * TEST HOOK, inert in normal use: when the environment variable KEYWARDEN_TEST_CRASH_AT names
 * this point (`before-backend`: the `generating` row is committed, the backend not yet called;
 * `after-backend`: the backend made the key, the row is not yet completed; `before-complete`:
 * inside the completing transaction, before it commits), the process SIGKILLs itself there.
 * test/e2e/crash-safety.test.ts uses it to prove every interruption of a rotation is recovered.
 * Read nowhere else; any other value, or none, does nothing.
 */
function crashPointForTests(point: CrashPoint): void {
  if (process.env.KEYWARDEN_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}

/** RFC 7638 JWK thumbprint (base64url SHA-256): the kid of every keywarden key. */
export function thumbprint(jwk: PublicJwk): Promise<string> {
  return calculateJwkThumbprint(jwk as Parameters<typeof calculateJwkThumbprint>[0], 'sha256');
}

/**
 * Creates one key for `scope` with a fixed timeline. Crash-safe ordering:
 * 1. the row is written as `generating` with the backend address chosen up front;
 * 2. the backend generates the keypair there;
 * 3. the row is completed with the public key and kid.
 * A crash between 1 and 3 leaves a `generating` row that reconcile finishes or removes. A
 * backend failure removes the row and any half-made object, then rethrows.
 * Must run under the scope lock.
 */
export async function generateKey(
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
  await ctx.ds.transaction(async (m) => {
    await ctx.keys.insertGenerating(row, now, m);
    await ctx.audit.record(
      {
        type: 'key.generating',
        actor,
        scope: scope.name,
        data: { keyId: id, reason, backend: backend.name },
      },
      m,
    );
  });
  crashPointForTests('before-backend');
  let generated;
  try {
    generated = await backend.generate(ref, {
      alg: scope.alg,
      rsaBits: scope.rsaBits,
      scope: scope.name,
      keyId: id,
      notBefore: timeline.publishAt,
      notAfter: timeline.expiresAt,
    });
  } catch (e) {
    await abandon(ctx, backend, row, actor, e);
    throw e;
  }
  crashPointForTests('after-backend');
  return completeKey(ctx, row, generated.ref, generated.publicJwk, actor, reason);
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
  await ctx.ds.transaction(async (m) => {
    await ctx.keys.completeGenerating(row.id, { kid, publicJwk, backendRef: ref }, now, m);
    await ctx.audit.record(
      {
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
      },
      m,
    );
    crashPointForTests('before-complete');
  });
  ctx.log.info({ scope: row.scope, kid, reason, activateAt: row.activateAt }, 'key created');
  return { ...row, kid, publicJwk, backendRef: ref, status: 'ready' };
}

/** Removes a failed generation: the backend object if any, then the row. */
export async function abandon(
  ctx: LifecycleContext,
  backend: KeyBackend,
  row: KeyRecord,
  actor: string,
  cause: unknown,
): Promise<void> {
  try {
    await backend.destroy(row.backendRef);
  } catch (e) {
    // The row stays `generating`, so reconcile retries the cleanup; nothing is lost.
    ctx.log.warn(
      { scope: row.scope, keyId: row.id, err: (e as Error).message },
      'cleanup of failed key pending',
    );
    return;
  }
  await ctx.ds.transaction(async (m) => {
    await ctx.keys.deleteGenerating(row.id, m);
    await ctx.audit.record(
      {
        type: 'key.generation-failed',
        actor,
        scope: row.scope,
        data: { keyId: row.id, error: (cause as Error)?.message ?? String(cause) },
      },
      m,
    );
  });
}
