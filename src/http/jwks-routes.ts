import type { FastifyInstance } from 'fastify';
import { jwksMaxAgeSeconds } from '../lifecycle/build-jwks';
import { requireScope, type LifecycleContext } from '../lifecycle/context';

const SCOPE_PARAM = {
  type: 'object',
  properties: { scope: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } },
  required: ['scope'],
} as const;

/**
 * Public, unauthenticated discovery: one JWKS per scope and an OpenID-style discovery
 * document. The JWKS body is built once per key-set change (KeyCache); a request only
 * computes its Cache-Control and compares the ETag.
 */
export function registerJwksRoutes(app: FastifyInstance, ctx: LifecycleContext, publicBaseUrl: string): void {
  app.get<{ Params: { scope: string } }>(
    '/scopes/:scope/.well-known/jwks.json',
    { schema: { params: SCOPE_PARAM } },
    async (req, reply) => {
      const scope = requireScope(ctx, req.params.scope);
      const view = ctx.cache.view(scope.name);
      if (!view)
        return reply.status(503).send({ error: { code: 'NO_ACTIVE_KEY', message: 'keys not loaded yet' } });
      const now = ctx.clock.now();
      const jwks = ctx.cache.jwks(view, now);
      reply
        .header('content-type', 'application/jwk-set+json')
        .header('cache-control', `public, max-age=${jwksMaxAgeSeconds(scope, jwks, now)}`)
        .header('etag', jwks.etag);
      if (req.headers['if-none-match'] === jwks.etag) return reply.status(304).send();
      return reply.send(jwks.body);
    },
  );

  app.get<{ Params: { scope: string } }>(
    '/scopes/:scope/.well-known/openid-configuration',
    { schema: { params: SCOPE_PARAM } },
    async (req, reply) => {
      const scope = requireScope(ctx, req.params.scope);
      reply.header('cache-control', `public, max-age=${scope.policy.jwksMaxAgeSeconds}`);
      return {
        issuer: scope.issuer,
        jwks_uri: `${publicBaseUrl}/scopes/${scope.name}/.well-known/jwks.json`,
        id_token_signing_alg_values_supported: [scope.alg],
        token_endpoint_auth_signing_alg_values_supported: [scope.alg],
      };
    },
  );
}
