import type { LifecycleContext } from './context';

/** Readiness: the store, every backend a scope uses, and key integrity. */
export interface Readiness {
  ok: boolean;
  checks: Record<string, { ok: boolean; detail: string }>;
}

/**
 * Whether this process can serve: the store answers, every backend a scope uses is healthy, and no
 * key row was refused by the integrity check (a refused row means someone wrote the store).
 */
export async function readiness(
  ctx: Pick<LifecycleContext, 'config' | 'store' | 'backend' | 'cache'>,
): Promise<Readiness> {
  const checks: Readiness['checks'] = { store: await ctx.store.ping() };
  for (const name of new Set(ctx.config.scopes.map((s) => s.backend))) {
    try {
      checks[`backend:${name}`] = await (await ctx.backend(name)).health();
    } catch (e) {
      checks[`backend:${name}`] = { ok: false, detail: (e as Error).message };
    }
  }
  // A key row the integrity check refused means someone wrote the store: say so, and which.
  const report = ctx.cache.integrity.report;
  const refused = report?.refused ?? [];
  const missing = report?.missingRows ?? [];
  if (refused.length > 0 || missing.length > 0) {
    const byScope = new Map<string, Map<string, number>>();
    for (const r of refused) {
      const reasons = byScope.get(r.scope) ?? new Map<string, number>();
      reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
      byScope.set(r.scope, reasons);
    }
    const parts = [...byScope].map(
      ([scope, reasons]) =>
        `scope ${scope}: ${[...reasons].map(([reason, n]) => `${n} ${reason}`).join(', ')}`,
    );
    if (missing.length > 0) parts.push(`${missing.length} backend key(s) whose row is missing`);
    checks.keys = {
      ok: false,
      detail: `key rows refused by the integrity check (see keywarden keys verify): ${parts.join('; ')}`,
    };
  }
  return { ok: Object.values(checks).every((c) => c.ok), checks };
}
