import type { ScopeConfig } from '../policy/scope';
import { jwksCacheControl, jwksMaxAgeSeconds } from './build-jwks';
import type { LifecycleContext } from './context';
import { ifNoneMatchHits } from './etag';

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
 * before its next change, and the `If-None-Match` comparison. Undefined while the scope's keys
 * are not loaded yet.
 */
export function answerJwks(
  ctx: Pick<LifecycleContext, 'cache' | 'clock'>,
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
