import type { RouteHandlerMethod } from 'fastify';
import type { Keywarden, ReadinessCheck } from '../lifecycle';

/** Liveness: the process answers. */
export const healthHandler: RouteHandlerMethod = async () => ({ status: 'ok' });

/**
 * Checks of another process that this process's readiness depends on, by name (a worker of
 * `serve --workers N`: the primary, which runs the scheduler, as `scheduler`).
 */
export type ExtraReadiness = () => Promise<Record<string, ReadinessCheck>>;

/**
 * Readiness: the store, every backend a scope uses, every scope can sign, key integrity, and any
 * `extra` checks (docs/api.md).
 */
export function readinessHandler(kw: Keywarden, extra?: ExtraReadiness): RouteHandlerMethod {
  return async (_req, reply) => {
    const [r, more] = await Promise.all([kw.readiness(), extra ? extra() : {}]);
    const checks: Record<string, ReadinessCheck> = { ...r.checks, ...more };
    const ok = Object.values(checks).every((c) => c.ok);
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not-ready', checks });
  };
}

/** Where `/metrics` reads its text from (the composition root: this process, or every worker). */
export interface MetricsSource {
  contentType: string;
  read(): Promise<string>;
}

/** `GET /metrics` in the Prometheus text format. For operators: expose it on internal networks only. */
export function metricsHandler(source: MetricsSource): RouteHandlerMethod {
  return async (_req, reply) => {
    reply.header('content-type', source.contentType).header('cache-control', 'no-store');
    return source.read();
  };
}
