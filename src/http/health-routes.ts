import type { FastifyInstance } from 'fastify';
import type { LifecycleContext } from '../lifecycle/context';

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
    const ok = Object.values(checks).every((c) => c.ok);
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not-ready', checks });
  });
}
