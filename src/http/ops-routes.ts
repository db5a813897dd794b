import type { RouteHandlerMethod } from 'fastify';
import type { Keywarden } from '../lifecycle';

/** Liveness: the process answers. */
export const healthHandler: RouteHandlerMethod = async () => ({ status: 'ok' });

/** Readiness: the store, every backend a scope uses, and key integrity (docs/api.md). */
export function readinessHandler(kw: Keywarden): RouteHandlerMethod {
  return async (_req, reply) => {
    const r = await kw.readiness();
    return reply.status(r.ok ? 200 : 503).send({ status: r.ok ? 'ready' : 'not-ready', checks: r.checks });
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
