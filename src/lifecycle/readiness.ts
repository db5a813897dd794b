import type { BackendHealth } from '../backends/key-backend';
import { pickSigningKey } from '../policy/next-actions';
import type { LifecycleContext } from './context';
import { GENERATION_FAILURES_NOT_READY } from './service-health';

/** One readiness check: `ok`, and what it found (the reason when not ok). */
export interface ReadinessCheck {
  ok: boolean;
  detail: string;
}

/** Whether one scope can sign now, and why not. */
export interface ScopeReadiness {
  scope: string;
  ok: boolean;
  /** Why the scope cannot sign (absent when it can). */
  reasons: string[];
}

/** Readiness: "this process can do its job now" (docs/operations.md "Readiness"). */
export interface Readiness {
  ok: boolean;
  /**
   * `store` (reads), `store-write` (a write commits, room on disk), `backend:<name>` per backend a
   * scope uses, `scopes` (how many scopes can sign), `scope:<name>` for each scope that cannot,
   * and `keys` when the integrity check refused key rows.
   */
  checks: Record<string, ReadinessCheck>;
  /** Every configured scope, ready or not (the `keywarden_scope_can_sign` metric). */
  scopes: ScopeReadiness[];
}

/** What a readiness probe signs when a scope's last signature failed: no JWS signing input looks like it. */
const PROBE_INPUT = Buffer.from('keywarden readiness probe: not a JWS signing input');

/**
 * Whether this process can do its job now: the store answers and commits writes, every backend a
 * scope uses is healthy, every scope can sign (it has an active key, its backend is healthy, its
 * last signature did not fail or a probe signature now succeeds, and its key generation is not
 * failing again and again), and no key row was refused by the integrity check (a refused row
 * means someone wrote the store).
 */
export async function readiness(
  ctx: Pick<LifecycleContext, 'config' | 'store' | 'backend' | 'cache' | 'clock' | 'health'>,
): Promise<Readiness> {
  const [store, storeWrite] = await Promise.all([ctx.store.ping(), ctx.store.writable()]);
  const checks: Readiness['checks'] = { store, 'store-write': storeWrite };
  const backendHealth = new Map<string, BackendHealth>();
  for (const name of new Set(ctx.config.scopes.map((s) => s.backend))) {
    let h: BackendHealth;
    try {
      h = await (await ctx.backend(name)).health();
    } catch (e) {
      h = { ok: false, detail: (e as Error).message };
    }
    backendHealth.set(name, h);
    checks[`backend:${name}`] = h;
  }
  const scopes = await Promise.all(
    ctx.config.scopes.map((s) => scopeReadiness(ctx, s.name, s.backend, backendHealth)),
  );
  const unready = scopes.filter((s) => !s.ok);
  checks.scopes = {
    ok: unready.length === 0,
    detail:
      unready.length === 0
        ? `all ${scopes.length} scope(s) can sign`
        : `${unready.length} of ${scopes.length} scope(s) cannot sign: ${unready.map((s) => s.scope).join(', ')}`,
  };
  for (const s of unready) {
    checks[`scope:${s.scope}`] = {
      ok: false,
      detail: `scope ${s.scope} cannot sign: ${s.reasons.join('; ')}`,
    };
  }
  const keys = integrityCheck(ctx);
  if (keys) checks.keys = keys;
  return { ok: Object.values(checks).every((c) => c.ok), checks, scopes };
}

async function scopeReadiness(
  ctx: Pick<LifecycleContext, 'backend' | 'cache' | 'clock' | 'health'>,
  scope: string,
  backendName: string,
  backendHealth: ReadonlyMap<string, BackendHealth>,
): Promise<ScopeReadiness> {
  const reasons: string[] = [];
  const key = pickSigningKey(ctx.cache.view(scope)?.records ?? [], ctx.clock.now());
  if (!key) reasons.push('no active signing key (NO_ACTIVE_KEY)');
  const backend = backendHealth.get(backendName);
  if (backend && !backend.ok) reasons.push(`backend ${backendName} is not healthy: ${backend.detail}`);
  const signFailure = ctx.health.signFailure(scope);
  if (key && backend?.ok && signFailure) {
    // The backend says it is well, but this scope's last signature failed (its key object gone,
    // say): one signature now decides, and a success clears the failure.
    try {
      await (await ctx.backend(key.backendRef.backend)).sign(key.backendRef, key.alg, PROBE_INPUT);
      ctx.health.signSucceeded(scope);
    } catch (e) {
      ctx.health.signFailed(scope, signFailure.code, (e as Error).message);
      reasons.push(
        `its signatures fail since ${signFailure.since.toISOString()} (${signFailure.code}): ${(e as Error).message}`,
      );
    }
  }
  const generation = ctx.health.generationFailure(scope);
  if (generation && generation.count >= GENERATION_FAILURES_NOT_READY) {
    reasons.push(
      `key generation failed ${generation.count} times in a row since ${generation.since.toISOString()} ` +
        `(${generation.code}): ${generation.message}`,
    );
  }
  return { scope, ok: reasons.length === 0, reasons };
}

/** A key row the integrity check refused means someone wrote the store: say so, and which. */
function integrityCheck(ctx: Pick<LifecycleContext, 'cache'>): ReadinessCheck | null {
  const report = ctx.cache.integrity.report;
  const refused = report?.refused ?? [];
  const missing = report?.missingRows ?? [];
  if (refused.length === 0 && missing.length === 0) return null;
  const byScope = new Map<string, Map<string, number>>();
  for (const r of refused) {
    const reasons = byScope.get(r.scope) ?? new Map<string, number>();
    reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    byScope.set(r.scope, reasons);
  }
  const parts = [...byScope].map(
    ([scope, reasons]) => `scope ${scope}: ${[...reasons].map(([reason, n]) => `${n} ${reason}`).join(', ')}`,
  );
  if (missing.length > 0) parts.push(`${missing.length} backend key(s) whose row is missing`);
  return {
    ok: false,
    detail: `key rows refused by the integrity check (see keywarden keys verify): ${parts.join('; ')}`,
  };
}
