import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { jwksCacheControl, jwksMaxAgeSeconds } from '../lifecycle/build-jwks';
import { requireScope, type LifecycleContext } from '../lifecycle/context';
import type { ScopeConfig } from '../policy/scope';

/**
 * Public, unauthenticated discovery: one JWKS per scope and an OpenID-style discovery
 * document. The JWKS body is built once per key-set change (KeyCache); a request only
 * computes its Cache-Control and compares the ETag.
 */
export function registerJwksRoutes(app: FastifyInstance, ctx: LifecycleContext, publicBaseUrl: string): void {
  // The hottest route (every relying party polls it): one static route per configured scope,
  // so a request neither parses a path parameter nor looks its scope up, and a synchronous
  // handler. The parametric route behind them only answers names that are not scopes (404).
  const serveJwks = (scope: ScopeConfig) => (req: FastifyRequest, reply: FastifyReply) => {
    const view = ctx.cache.view(scope.name);
    if (!view) {
      reply.status(503).send({ error: { code: 'NO_ACTIVE_KEY', message: 'keys not loaded yet' } });
      return;
    }
    const now = ctx.clock.now();
    const jwks = ctx.cache.jwks(view, now);
    reply
      .header('content-type', 'application/jwk-set+json')
      .header('cache-control', jwksCacheControl(jwksMaxAgeSeconds(scope, jwks, now)))
      .header('etag', jwks.etag);
    if (req.headers['if-none-match'] === jwks.etag) reply.status(304).send();
    else reply.send(jwks.bytes);
  };
  for (const scope of ctx.config.scopes) {
    app.get(`/scopes/${scope.name}/.well-known/jwks.json`, serveJwks(scope));
  }
  app.get<{ Params: { scope: string } }>('/scopes/:scope/.well-known/jwks.json', (req) => {
    requireScope(ctx, req.params.scope); // throws SCOPE_NOT_FOUND: every scope has its route above
    throw new Error(`no JWKS route for configured scope ${req.params.scope}`);
  });

  app.get<{ Params: { scope: string } }>(
    '/scopes/:scope/.well-known/openid-configuration',
    async (req, reply) => {
      const scope = requireScope(ctx, req.params.scope);
      reply.header('cache-control', jwksCacheControl(scope.policy.jwksMaxAgeSeconds));
      return {
        issuer: scope.issuer,
        jwks_uri: `${publicBaseUrl}/scopes/${scope.name}/.well-known/jwks.json`,
        id_token_signing_alg_values_supported: [scope.alg],
        token_endpoint_auth_signing_alg_values_supported: [scope.alg],
      };
    },
  );
}
