import { defineOperation } from './operation';
import { integer, object, text } from './schema';

/** The sign route's ceiling on ttlSeconds; the scope's maxTokenTtl caps it far lower anyway. */
const MAX_TTL_SECONDS = 400 * 86400;

export const tokensSign = defineOperation({
  name: 'tokens.sign',
  summary: "sign a JWT with the scope's active key as an operator; iss is the scope's issuer",
  mutates: false,
  // claims: any JSON; the use case says what is wrong with it (not an object, no aud, sets iss...).
  input: object({ scope: text(), claims: {}, ttlSeconds: integer(1, MAX_TTL_SECONDS), typ: text(64) }, [
    'scope',
    'claims',
  ]),
  run(kw, input: { scope: string; claims: unknown; ttlSeconds?: number; typ?: string }) {
    return kw.sign(input.scope, {
      claims: input.claims,
      ...(input.ttlSeconds !== undefined ? { ttlSeconds: input.ttlSeconds } : {}),
      ...(input.typ !== undefined ? { typ: input.typ } : {}),
    });
  },
});

export const tokensVerify = defineOperation({
  name: 'tokens.verify',
  summary: 'fully validate a JWT for a scope and audience (I6)',
  mutates: false,
  input: object({ scope: text(), token: text(1_000_000), audience: text(1024), typ: text(64) }, [
    'scope',
    'token',
    'audience',
  ]),
  async run(kw, input: { scope: string; token: string; audience: string; typ?: string }) {
    const r = await kw.verify(input.scope, input.token, input.audience, input.typ);
    return r.valid
      ? { valid: true as const, kid: r.kid, claims: r.claims }
      : { valid: false as const, reason: r.reason, message: r.message };
  },
});
