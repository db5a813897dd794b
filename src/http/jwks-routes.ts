import type { RouteHandlerMethod, FastifyReply, FastifyRequest } from 'fastify';
import { jwksCacheControl, type Keywarden } from '../lifecycle';
import { keyEventsPath } from './key-events';

/** The media type of every JWKS answer (RFC 7517 §8.5), from either path. */
export const JWKS_CONTENT_TYPE = 'application/jwk-set+json';

/** The path a scope's JWKS is published at. */
export function jwksPath(scope: string): string {
  return `/scopes/${scope}/.well-known/jwks.json`;
}

/**
 * One scope's JWKS: the facade's answer (the same one the node:http fast path writes), with a
 * max-age that ends before its next change and 304 on a matching `If-None-Match`. Synchronous; one
 * parametric route for every scope (per-scope static routes made fastify's start-up super-linear
 * in the number of scopes: bench/route-registration.ts). Most JWKS requests never reach it: the JwksFastPath answers a plain `GET` of the exact path ahead of fastify, and hands
 * everything else (HEAD, a query string, shutdown, keys not loaded, an exception) to this.
 */
export function jwksHandler(kw: Keywarden): RouteHandlerMethod {
  return (req: FastifyRequest, reply: FastifyReply) => {
    // SCOPE_NOT_FOUND (404) for a scope that is not configured.
    const scope = kw.scope((req.params as { scope: string }).scope);
    const answer = kw.answerJwks(scope, req.headers['if-none-match']);
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
}

/** An OpenID-style discovery document per scope. */
export function discoveryHandler(kw: Keywarden, publicBaseUrl: string): RouteHandlerMethod {
  return async (req, reply) => {
    const { scope: name } = req.params as { scope: string };
    const scope = kw.scope(name);
    reply.header('cache-control', jwksCacheControl(scope.policy.jwksMaxAgeSeconds));
    return kw.discovery(
      scope.name,
      `${publicBaseUrl}${jwksPath(scope.name)}`,
      `${publicBaseUrl}${keyEventsPath(scope.name)}`,
    );
  };
}
