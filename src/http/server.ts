import fastify, { type FastifyInstance } from 'fastify';
import type { LifecycleContext } from '../lifecycle/context';
import { registerErrorHandling } from './errors';
import { registerHealthRoutes } from './health-routes';
import { registerJwksRoutes } from './jwks-routes';

export interface ServerOptions {
  /** Base URL relying parties reach this server at (for `jwks_uri`). */
  publicBaseUrl: string;
  /** Extra route plugins (sign/verify/metrics) registered by the composition root. */
  plugins?: ((app: FastifyInstance) => void)[];
}

/**
 * The HTTP surface: thin adapters over the lifecycle. Bodies are size-limited, JSON only, and
 * every failure is a JSON error with a proper status; no request can crash the process.
 */
export function createServer(ctx: LifecycleContext, opts: ServerOptions): FastifyInstance {
  const app = fastify({
    // No fastify logger: with one, fastify makes a child logger and a finish/error listener
    // pair for every request even when request logging is off, a visible share of a JWKS
    // answer in bench/profile/jwks.ts. Errors are logged by registerErrorHandling.
    logger: false,
    bodyLimit: ctx.config.server.bodyLimitBytes,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    // Duplicate JSON keys and prototype pollution attempts are refused at parse time.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  registerErrorHandling(app, ctx.log.child({ component: 'http' }));
  registerJwksRoutes(app, ctx, opts.publicBaseUrl);
  registerHealthRoutes(app, ctx);
  for (const p of opts.plugins ?? []) p(app);
  return app;
}
