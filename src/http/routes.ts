import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Keywarden } from '../lifecycle';
import { decorateRequestClient } from './auth';
import { keyEventsPath, type KeyEventStreams } from './key-events';
import { discoveryHandler, jwksHandler, jwksPath } from './jwks-routes';
import {
  healthHandler,
  metricsHandler,
  readinessHandler,
  type ExtraReadiness,
  type MetricsSource,
} from './ops-routes';
import { signRoute, strictValidator, verifyRoute, type TokenService } from './token-routes';

/**
 * Routes that share settings (node-oidc-provider's initialize_app builds its app from one such
 * list). `setup` runs in the group's own encapsulated context, so its hooks and parsers cover only
 * its routes (and a hook there never turns the JWKS fast path off).
 */
export interface RouteGroup {
  name: string;
  setup?(app: FastifyInstance): void;
  routes: RouteOptions[];
}

/** Registers each group in a context of its own (a group's hooks cover its routes only). */
export function registerRouteGroups(app: FastifyInstance, groups: readonly RouteGroup[]): void {
  for (const group of groups) {
    if (!group.setup) {
      for (const r of group.routes) app.route(r);
      continue;
    }
    const { setup, routes } = group;
    app.register(async (child) => {
      setup(child);
      for (const r of routes) child.route(r);
    });
  }
}

/** What the routes need, every collaborator built by the composition root (src/daemon.ts). */
export interface RouteDeps {
  kw: Keywarden;
  /** Base URL relying parties reach this server at (for `jwks_uri`). */
  publicBaseUrl: string;
  /** `/metrics`, when served. */
  metrics?: MetricsSource;
  /** Checks of another process `/readyz` includes (a cluster worker's: the primary's). */
  extraReadiness?: ExtraReadiness;
  /** The authenticated token routes, when served. */
  tokenService?: TokenService;
  /** The key-set change streams, when served. */
  keyEvents?: KeyEventStreams;
}

/**
 * Every HTTP route of keywarden (docs/api.md): a new route is one handler and one line here.
 */
export function routeTable(d: RouteDeps): RouteGroup[] {
  const { kw } = d;
  const groups: RouteGroup[] = [
    {
      name: 'public',
      routes: [
        // One parametric route for every scope, never one per scope: fastify's registration of
        // static routes grows faster than linearly (10,000 scopes' two routes each took 15 s,
        // 20,000 took 126 s, 40,000 took 434 s), which stopped a 100,000-scope daemon starting.
        { method: 'GET', url: jwksPath(':scope'), handler: jwksHandler(kw) },
        {
          method: 'GET',
          url: '/scopes/:scope/.well-known/openid-configuration',
          handler: discoveryHandler(kw, d.publicBaseUrl),
        },
        { method: 'GET', url: '/healthz', handler: healthHandler },
        { method: 'GET', url: '/readyz', handler: readinessHandler(kw, d.extraReadiness) },
        ...(d.metrics
          ? [{ method: 'GET' as const, url: '/metrics', handler: metricsHandler(d.metrics) }]
          : []),
      ],
    },
  ];
  const events = d.keyEvents;
  if (events) {
    groups.push({
      name: 'key events',
      setup(api) {
        api.addHook('onReady', (done) => {
          events.start();
          done();
        });
        // Before fastify waits for open requests to finish: the streams never would.
        api.addHook('preClose', (done) => {
          events.stop();
          done();
        });
      },
      routes: [
        {
          method: 'GET',
          url: keyEventsPath(':scope'),
          // One route for all scopes (above).
          handler: events.handler(),
        },
      ],
    });
  }
  const t = d.tokenService;
  if (t) {
    groups.push({
      name: 'token service',
      setup(api) {
        // fastify also parses text/plain by default; these routes take JSON and nothing else (415).
        api.removeContentTypeParser('text/plain');
        api.setValidatorCompiler(strictValidator());
        decorateRequestClient(api);
        api.addHook('onReady', () => {
          t.audit.activity.start();
          t.audit.denied.start();
          return t.auth.start();
        });
        // fastify runs onClose after in-flight requests finished: the last minute's counts are written.
        api.addHook('onClose', async () => {
          t.auth.stop();
          await Promise.all([t.audit.activity.stop(), t.audit.denied.stop()]);
        });
      },
      routes: [signRoute(t), verifyRoute(t)],
    });
  }
  return groups;
}
