import { createHash } from 'node:crypto';
import type { KeyRecord, PublicJwk } from '../policy/key';
import { effectiveState, isPublished, nextStateChangeAt } from '../policy/key-state';
import type { ScopeConfig } from '../policy/scope';
import { KeySetError, toPublishedJwks } from '@keywarden/verify';
import { KeywardenError } from '../policy/errors';

/** A built JWKS document, serialised once and served many times. */
export interface BuiltJwks {
  body: string;
  /** `body` as UTF-8 bytes, made once: a Buffer is written to the socket without re-encoding. */
  bytes: Buffer;
  etag: string;
  kids: string[];
  /** The earliest instant any key in it changes state; the document is rebuilt then. */
  nextChangeAt: Date | null;
}

/**
 * The scope's JWKS at `now`: its pending, active and retired keys only (I5), each JWK built by
 * `toPublishedJwk` (the one definition of the published format, shared with the verify
 * library's parser): an allowlist of public members plus kid, alg, use, the scope's `iss`, the
 * key's lifecycle instants and the scope's maxTokenTtl (`max_token_ttl`), so relying parties
 * apply the same rules as the server.
 */
export function buildJwks(scope: ScopeConfig, keys: readonly KeyRecord[], now: Date): BuiltJwks {
  const published = keys.filter(
    (k) =>
      k.status === 'ready' && k.kid !== null && k.publicJwk !== null && isPublished(effectiveState(k, now)),
  );
  const jwks = publishedJwks(
    published.map((k) => ({
      ...k,
      kid: k.kid as string,
      publicJwk: k.publicJwk as PublicJwk,
      maxTokenTtlSeconds: scope.policy.maxTokenTtlSeconds,
    })),
    scope.issuer,
  );
  const body = JSON.stringify(jwks);
  let next: Date | null = null;
  for (const k of published) {
    const c = nextStateChangeAt(k, now);
    if (c && (!next || c < next)) next = c;
  }
  return {
    body,
    bytes: Buffer.from(body, 'utf8'),
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
    kids: published.map((k) => k.kid as string),
    nextChangeAt: next,
  };
}

/** toPublishedJwks, its refusal as the daemon's KEY_NOT_USABLE (mapped to a status like every code). */
function publishedJwks(...args: Parameters<typeof toPublishedJwks>): ReturnType<typeof toPublishedJwks> {
  try {
    return toPublishedJwks(...args);
  } catch (e) {
    if (e instanceof KeySetError) throw new KeywardenError('KEY_NOT_USABLE', e.message, { cause: e });
    throw e;
  }
}

/**
 * `Cache-Control: max-age` for a JWKS served at `now`: never beyond the next state change of
 * any key in it, never beyond the scope's jwksMaxAge, jittered downwards by up to 10% so
 * fleets of relying parties do not refetch in lockstep. Never `no-cache`, never days.
 */
export function jwksMaxAgeSeconds(
  scope: ScopeConfig,
  jwks: BuiltJwks,
  now: Date,
  random = Math.random,
): number {
  let max = scope.policy.jwksMaxAgeSeconds;
  if (jwks.nextChangeAt)
    max = Math.min(max, Math.floor((jwks.nextChangeAt.getTime() - now.getTime()) / 1000));
  return Math.max(0, Math.floor(max * (1 - 0.1 * random())));
}

/** Cache-Control values already made, by max-age (at most a day's worth of distinct values). */
const cacheControlValues = new Map<number, string>();

/**
 * The `Cache-Control` value for a max-age, made once and reused: the JWKS route answers every
 * relying party's poll, and a string built per request is a cons string V8 must flatten again
 * when Node validates the header value (measured in bench/profile/jwks.ts).
 */
export function jwksCacheControl(maxAgeSeconds: number): string {
  let value = cacheControlValues.get(maxAgeSeconds);
  if (value === undefined) {
    if (cacheControlValues.size >= 86_400) cacheControlValues.clear();
    value = `public, max-age=${maxAgeSeconds}`;
    cacheControlValues.set(maxAgeSeconds, value);
  }
  return value;
}
