import { validateToken, type ValidationResult, type VerificationKey } from '@keywarden/verify';
import { requireScope, type LifecycleContext } from './context';

/**
 * Complete validation of a token against ONE scope (I5, I6): only that scope's keys are
 * candidates, `iss` must be that scope's issuer, the key's state is computed now, and `exp - iat`
 * is bounded by the scope's maxTokenTtl as configured now (the bound the JWKS publishes).
 * Revoked keys are still looked up (so the reason says `key_revoked`, not `kid_unknown`).
 * `typ`, when given, is the token type the caller accepts (explicit typing, see validateToken).
 */
export async function verifyToken(
  ctx: LifecycleContext,
  scopeName: string,
  token: string,
  audience: string,
  typ?: string,
): Promise<ValidationResult> {
  const scope = requireScope(ctx, scopeName);
  const view = ctx.cache.view(scope.name);
  const lookup = (kid: string): VerificationKey[] => {
    const k = view?.byKid.get(kid);
    if (!k) return [];
    const r = k.record;
    return [
      {
        kid,
        alg: r.alg,
        key: k.publicKey,
        activateAt: r.activateAt,
        retireAt: r.retireAt,
        expiresAt: r.expiresAt,
        revokedAt: r.revokedAt,
        maxTokenTtlSeconds: scope.policy.maxTokenTtlSeconds,
      },
    ];
  };
  return validateToken(token, lookup, {
    issuer: scope.issuer,
    audience,
    now: ctx.clock.now(),
    ...(typ !== undefined ? { typ } : {}),
  });
}
