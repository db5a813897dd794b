import { randomUUID } from 'node:crypto';
import { buildClaimsPayload } from '../policy/claims';
import { KeywardenError } from '../policy/errors';
import { pickSigningKey } from '../policy/next-actions';
import { requireScope, type LifecycleContext } from './context';
import { tokenTypeProblem } from '../policy/token-type';

export interface SignRequest {
  claims: unknown;
  ttlSeconds?: number;
  /** JOSE `typ` header, e.g. `JWT` (default) or `at+jwt`. */
  typ?: string;
}

export interface SignedToken {
  token: string;
  kid: string;
  expiresAt: Date;
  /** The token's `jti`: what the audit log records of it (never the token). */
  jti: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64url');

/**
 * Encoded JOSE headers by `alg kid typ`: a scope signs with one key at a time, so the header is
 * the same for every token until rotation. Bounded: rotation and a few `typ`s add entries.
 */
const encodedHeaders = new Map<string, string>();
const MAX_ENCODED_HEADERS = 1024;
/** The last header asked for: nearly every request asks for the one before it. */
let lastHeader: { alg: string; kid: string; typ: string; encoded: string } | null = null;

function encodedHeader(alg: string, kid: string, typ: string): string {
  const last = lastHeader;
  if (last !== null && last.kid === kid && last.typ === typ && last.alg === alg) return last.encoded;
  const id = `${alg} ${kid} ${typ}`;
  let h = encodedHeaders.get(id);
  if (h === undefined) {
    h = b64(JSON.stringify({ alg, kid, typ }));
    if (encodedHeaders.size >= MAX_ENCODED_HEADERS) encodedHeaders.clear();
    encodedHeaders.set(id, h);
  }
  lastHeader = { alg, kid, typ, encoded: h };
  return h;
}

/** The `typ` a request without one gets (a valid token type: it needs no check). */
const DEFAULT_TYP = 'JWT';

/**
 * Signs a JWT for `scope` with its signing key at this instant (the active key with the
 * latest activateAt, computed now: I2). The private key never leaves the backend (I3).
 */
export async function signToken(
  ctx: LifecycleContext,
  scopeName: string,
  req: SignRequest,
): Promise<SignedToken> {
  const scope = requireScope(ctx, scopeName);
  const typ = req.typ ?? DEFAULT_TYP;
  if (typ !== DEFAULT_TYP && tokenTypeProblem(typ) !== undefined) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      'header.typ must be a short media type such as JWT or at+jwt',
    );
  }
  const now = ctx.clock.now();
  const view = ctx.cache.view(scope.name);
  const key = view && pickSigningKey(view.records, now);
  if (!key || !key.kid) {
    throw new KeywardenError('NO_ACTIVE_KEY', `scope ${scope.name} has no active signing key right now`);
  }
  const jti = randomUUID();
  const payload = buildClaimsPayload(
    scope,
    { claims: req.claims, ttlSeconds: req.ttlSeconds },
    now,
    key.expiresAt,
    jti,
  );
  const signingInput = `${encodedHeader(key.alg, key.kid, typ)}.${b64(payload.json)}`;
  let signature: Uint8Array;
  try {
    const backend = await ctx.backend(key.backendRef.backend);
    signature = await backend.sign(key.backendRef, key.alg, Buffer.from(signingInput, 'latin1'));
  } catch (e) {
    // Readiness names a scope whose backend refuses its signatures (service-health.ts).
    ctx.health.signFailed(
      scope.name,
      e instanceof KeywardenError ? e.code : 'INTERNAL',
      (e as Error)?.message ?? String(e),
    );
    throw e;
  }
  ctx.health.signSucceeded(scope.name);
  const sig = Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength);
  return {
    token: `${signingInput}.${sig.toString('base64url')}`,
    kid: key.kid,
    expiresAt: new Date(payload.exp * 1000),
    jti,
  };
}
