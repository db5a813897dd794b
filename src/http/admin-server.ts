import fastify, { type FastifyInstance } from 'fastify';
import type { Keywarden } from '../lifecycle';
import { registerErrorHandling } from './errors';
import { registerRouteGroups, type RouteGroup } from './routes';

/**
 * A server for the admin API alone (the admin socket): the same error mapping and body rules as
 * the public server, none of its public routes or JWKS fast path.
 */
export function createAdminServer(kw: Keywarden, groups: readonly RouteGroup[]): FastifyInstance {
  const app = fastify({
    logger: false,
    bodyLimit: kw.config.server.bodyLimitBytes,
    return503OnClosing: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  registerErrorHandling(app, kw.log.child({ component: 'admin' }));
  registerRouteGroups(app, groups);
  return app;
}
