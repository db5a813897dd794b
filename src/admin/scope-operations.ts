import { defineOperation } from './operation';
import { integer, object, text } from './schema';

export const scopesShow = defineOperation({
  name: 'scopes.show',
  summary: "a scope's config, its signing key and key counts by state",
  mutates: false,
  input: object({ scope: text() }, ['scope']),
  async run(kw, input: { scope: string }) {
    const { scope, signingKid, keysByState } = await kw.scopeDetails(input.scope);
    return { ...scope, signingKid, keysByState };
  },
});

export const scopesJwks = defineOperation({
  name: 'scopes.jwks',
  summary: "a scope's published JWKS as the daemon serves it",
  mutates: false,
  input: object({ scope: text() }, ['scope']),
  run(kw, input: { scope: string }) {
    return JSON.parse(kw.jwksDocument(input.scope)) as { keys: Record<string, unknown>[] };
  },
});

export const scopesPlan = defineOperation({
  name: 'scopes.plan',
  summary: "a scope's key timeline: live keys and the next N rotations (reads only)",
  mutates: false,
  input: object({ scope: text(), rotations: integer(1, 100) }, ['scope', 'rotations']),
  async run(kw, input: { scope: string; rotations: number }) {
    const { scope, now, keys } = await kw.plan(input.scope, input.rotations);
    return { scope: scope.name, now, policy: scope.policy, keys };
  },
});
