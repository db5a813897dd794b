import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { jwksCacheControl, jwksMaxAgeSeconds } from '../lifecycle/build-jwks';
import { requireScope, type LifecycleContext } from '../lifecycle/context';
import type { ScopeConfig } from '../policy/scope';
import { ifNoneMatchHits } from './etag';

/** The media type of every JWKS answer (RFC 7517 §8.5), from either path. */
export const JWKS_CONTENT_TYPE = 'application/jwk-set+json';

/** The path a scope's JWKS is published at. */
export function jwksPath(scope: string): string {
  return `/scopes/${scope}/.well-known/jwks.json`;
}

/** What a JWKS request is answered with: the document, or 304 when `If-None-Match` matches. */
export interface JwksAnswer {
  notModified: boolean;
  cacheControl: string;
  etag: string;
  /** The document's bytes (sent unless `notModified`). */
  bytes: Buffer;
}

/**
 * The one computation behind every JWKS answer, whichever way the request arrived (the
 * node:http fast path or the fastify route): the scope's current document, a max-age that ends
 * before its next change, and the `If-None-Match` comparison. Undefined while the scope's keys are not
 * loaded yet.
 */
export function answerJwks(
  ctx: LifecycleContext,
  scope: ScopeConfig,
  ifNoneMatch: string | undefined,
): JwksAnswer | undefined {
  const view = ctx.cache.view(scope.name);
  if (!view) return undefined;
  const now = ctx.clock.now();
  const jwks = ctx.cache.jwks(view, now);
  return {
    notModified: ifNoneMatchHits(ifNoneMatch, jwks.etag),
    cacheControl: jwksCacheControl(jwksMaxAgeSeconds(scope, jwks, now)),
    etag: jwks.etag,
    bytes: jwks.bytes,
  };
}

/**
 * Public, unauthenticated discovery: one JWKS per scope and an OpenID-style discovery
 * document. The JWKS body is built once per key-set change (KeyCache); a request only
 * computes its Cache-Control and compares the ETag. Most JWKS requests never reach these
 * routes: the JwksFastPath answers a plain `GET` of the exact path ahead of fastify, and hands
 * everything else (HEAD, a query string, shutdown, keys not loaded, an exception) to them.
 */
export function registerJwksRoutes(app: FastifyInstance, ctx: LifecycleContext, publicBaseUrl: string): void {
  // One static route per configured scope, so a request neither parses a path parameter nor
  // looks its scope up, and a synchronous handler. The parametric route behind them only
  // answers names that are not scopes (404).
  const serveJwks = (scope: ScopeConfig) => (req: FastifyRequest, reply: FastifyReply) => {
    const answer = answerJwks(ctx, scope, req.headers['if-none-match']);
    if (!answer) {
      reply.status(503).send({ error: { code: 'NO_ACTIVE_KEY', message: 'keys not loaded yet' } });
      return;
    }
    reply
      .header('content-type', JWKS_CONTENT_TYPE)
      .header('cache-control', answer.cacheControl)
      .header('etag', answer.etag);
    if (answer.notModified) reply.status(304).send();
    else reply.send(answer.bytes);
  };
  for (const scope of ctx.config.scopes) {
    app.get(jwksPath(scope.name), serveJwks(scope));
  }
  app.get<{ Params: { scope: string } }>(jwksPath(':scope'), (req) => {
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
        jwks_uri: `${publicBaseUrl}${jwksPath(scope.name)}`,
        id_token_signing_alg_values_supported: [scope.alg],
        token_endpoint_auth_signing_alg_values_supported: [scope.alg],
      };
    },
  );
}
