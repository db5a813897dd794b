import { KeywardenError } from './errors';
import type { ScopeConfig } from './scope';

/** Limits on caller-supplied claims: a signing service is not a JSON storage service. */
export const CLAIM_LIMITS = { maxDepth: 8, maxBytes: 8192, maxMembers: 256 } as const;

/** Claims the server sets itself; a request carrying them is refused, not overwritten. */
const SERVER_SET = ['iat', 'nbf', 'exp', 'jti'] as const;

export interface ClaimRequest {
  claims: unknown;
  /** Requested lifetime; capped at the scope's maxTokenTtl and the key's expiry. */
  ttlSeconds?: number;
}

export interface TokenClaims {
  [name: string]: unknown;
  iss: string;
  aud: string | string[];
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
}

const { propertyIsEnumerable } = Object.prototype;

/** The members the server sets, computed from a request that passed the claim rules. */
type ServerClaims = Pick<TokenClaims, 'iss' | 'aud' | 'iat' | 'nbf' | 'exp' | 'jti'>;

/** A request that passed the claim rules: the caller's claims, their JSON text, the server's members. */
interface CheckedClaims {
  claims: Record<string, unknown>;
  /** JSON.stringify(claims), made once for the size limit and reused for the payload. */
  claimsJson: string;
  server: ServerClaims;
}

/**
 * Builds the claims of a token signed for `scope` at `now` with a key expiring at
 * `keyExpiresAt`. `iss` is the scope's issuer: a caller that sets a different one is refused
 * (I5); `aud` must name only the scope's audiences; `exp = min(now + ttl, keyExpiresAt)` with
 * `ttl <= maxTokenTtl`, so no token outlives its key.
 */
export function buildClaims(
  scope: ScopeConfig,
  request: ClaimRequest,
  now: Date,
  keyExpiresAt: Date,
  jti: string,
): TokenClaims {
  const checked = checkClaims(scope, request, now, keyExpiresAt, jti);
  return withServerClaims(checked.claims, checked.server);
}

/** A token's payload as JSON text, and the `exp` in it. */
export interface ClaimsPayload {
  json: string;
  exp: number;
}

/**
 * The same claims as `buildClaims`, under the same rules, as the JWS payload's JSON text:
 * byte for byte `JSON.stringify(buildClaims(...))`. The sign path serialises the caller's
 * claims once for the size limit anyway; the payload is that text with the server's members
 * appended, instead of a copy of the claims serialised a second time. Appending is exact because
 * the rules leave nothing to replace: `iat`, `nbf`, `exp` and `jti` are refused in a request,
 * and the `iss` and `aud` a request may carry are already the values the server sets (an `iss`
 * must equal the scope's issuer; `aud` is kept as sent), in the place a copy would keep them.
 */
export function buildClaimsPayload(
  scope: ScopeConfig,
  request: ClaimRequest,
  now: Date,
  keyExpiresAt: Date,
  jti: string,
): ClaimsPayload {
  const { claims, claimsJson, server } = checkClaims(scope, request, now, keyExpiresAt, jti);
  // `aud` is required, so the caller's object has at least one member: "{...}" with content.
  // Anything else (a programmatic caller's toJSON) takes the copying path.
  if (claimsJson.length < 3 || claimsJson.charCodeAt(0) !== 0x7b || !claimsJson.endsWith('}')) {
    return { json: JSON.stringify(withServerClaims(claims, server)), exp: server.exp };
  }
  // An own enumerable `iss` is in the caller's text already, where a copy keeps it; otherwise
  // (absent, or not own and enumerable, which JSON.stringify skips) a copy appends it here.
  const iss = propertyIsEnumerable.call(claims, 'iss') ? '' : `,"iss":${JSON.stringify(server.iss)}`;
  const json =
    `${claimsJson.slice(0, -1)}${iss},"iat":${server.iat},"nbf":${server.nbf},` +
    `"exp":${server.exp},"jti":${JSON.stringify(server.jti)}}`;
  return { json, exp: server.exp };
}

function checkClaims(
  scope: ScopeConfig,
  request: ClaimRequest,
  now: Date,
  keyExpiresAt: Date,
  jti: string,
): CheckedClaims {
  const claims = request.claims;
  const fail = (message: string): never => {
    throw new KeywardenError('CLAIMS_INVALID', message);
  };
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims))
    fail('claims must be a JSON object');
  checkShape(claims, 1, fail);
  const c = claims as Record<string, unknown>;
  const claimsJson = JSON.stringify(c);
  const size = Buffer.byteLength(claimsJson);
  if (size > CLAIM_LIMITS.maxBytes) fail(`claims are ${size} bytes; the limit is ${CLAIM_LIMITS.maxBytes}`);
  for (const name of SERVER_SET) {
    if (name in c)
      fail(`claim "${name}" is set by the server${name === 'exp' ? '; request ttlSeconds instead' : ''}`);
  }
  if ('iss' in c && c.iss !== scope.issuer) {
    fail(`claim "iss" must be this scope's issuer ${scope.issuer} (or absent); got ${JSON.stringify(c.iss)}`);
  }
  const aud = c.aud;
  const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (auds === undefined || auds.length === 0 || !auds.every((a): a is string => typeof a === 'string')) {
    fail(`claim "aud" is required: one of ${scope.audiences.join(', ')} (a string or an array of them)`);
  }
  for (const a of auds as string[]) {
    if (!scope.audiences.includes(a))
      fail(`audience "${a}" is not one of this scope's: ${scope.audiences.join(', ')}`);
  }
  const max = scope.policy.maxTokenTtlSeconds;
  const ttl = request.ttlSeconds ?? max;
  if (!Number.isInteger(ttl) || ttl <= 0) fail('ttlSeconds must be a positive integer');
  const iat = Math.floor(now.getTime() / 1000);
  const exp = Math.min(iat + Math.min(ttl, max), Math.floor(keyExpiresAt.getTime() / 1000));
  if (exp <= iat) fail('the signing key expires too soon to issue a token');
  return {
    claims: c,
    claimsJson,
    server: { iss: scope.issuer, aud: aud as string | string[], iat, nbf: iat, exp, jti },
  };
}

/**
 * `{ ...claims, ...server }`, built so it stays fast: on Node 20, an object literal that spreads
 * a JSON-parsed object and then adds members costs ~6 µs and yields a slow-mode object that
 * JSON.stringify also handles slowly (measured in bench/: ~4% of a sign request). Every member is
 * defined as an own data property, as spread does, so a member named `__proto__` stays a claim.
 */
function withServerClaims(claims: Record<string, unknown>, server: ServerClaims): TokenClaims {
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(claims)) {
    if (name === '__proto__') {
      Object.defineProperty(out, name, {
        value: claims[name],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else {
      out[name] = claims[name];
    }
  }
  out.iss = server.iss;
  out.aud = server.aud;
  out.iat = server.iat;
  out.nbf = server.nbf;
  out.exp = server.exp;
  out.jti = server.jti;
  return out as TokenClaims;
}

function checkShape(v: unknown, depth: number, fail: (m: string) => never, count = { n: 0 }): void {
  if (depth > CLAIM_LIMITS.maxDepth) fail(`claims nest deeper than ${CLAIM_LIMITS.maxDepth} levels`);
  if (v === null || typeof v !== 'object') {
    if (typeof v === 'number' && !Number.isFinite(v)) fail('claims must be finite JSON numbers');
    return;
  }
  for (const child of Object.values(v)) {
    if (++count.n > CLAIM_LIMITS.maxMembers) fail(`claims have more than ${CLAIM_LIMITS.maxMembers} members`);
    checkShape(child, depth + 1, fail, count);
  }
}
