import type { FastifyInstance } from 'fastify';
import type { LifecycleContext } from '../lifecycle/context';
import type { KeyRefusal } from '../policy/key-integrity';

/** `scope enterprise: 1 seal-invalid; scope consumer: 1 object-missing; 2 key rows missing` */
function integritySummary(refused: readonly KeyRefusal[], missing: number): string {
  const byScope = new Map<string, Map<string, number>>();
  for (const r of refused) {
    const reasons = byScope.get(r.scope) ?? new Map<string, number>();
    reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
    byScope.set(r.scope, reasons);
  }
  const parts = [...byScope].map(
    ([scope, reasons]) => `scope ${scope}: ${[...reasons].map(([reason, n]) => `${n} ${reason}`).join(', ')}`,
  );
  if (missing > 0) parts.push(`${missing} backend key(s) whose row is missing`);
  return `key rows refused by the integrity check (see keywarden keys verify): ${parts.join('; ')}`;
}

/** Liveness (the process answers) and readiness (store and every used backend answer). */
export function registerHealthRoutes(app: FastifyInstance, ctx: LifecycleContext): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_req, reply) => {
    const checks: Record<string, { ok: boolean; detail: string }> = {};
    try {
      await ctx.ds.query('SELECT 1');
      checks.store = { ok: true, detail: ctx.ds.options.type };
    } catch (e) {
      checks.store = { ok: false, detail: (e as Error).message };
    }
    const used = new Set(ctx.config.scopes.map((s) => s.backend));
    for (const name of used) {
      try {
        checks[`backend:${name}`] = await (await ctx.backend(name)).health();
      } catch (e) {
        checks[`backend:${name}`] = { ok: false, detail: (e as Error).message };
      }
    }
    // A key row the integrity check refused means someone wrote the store: say so, and which.
    const refused = ctx.cache.integrity.report?.refused ?? [];
    const missing = ctx.cache.integrity.report?.missingRows ?? [];
    if (refused.length > 0 || missing.length > 0) {
      checks.keys = { ok: false, detail: integritySummary(refused, missing.length) };
    }
    const ok = Object.values(checks).every((c) => c.ok);
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not-ready', checks });
  });
}
