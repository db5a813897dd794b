import type { KeyListing, RowTrust } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { defineOperation } from './operation';
import { NO_INPUT, object, text } from './schema';

/**
 * A key as operators see it: its record plus its state now in its scope (only the signing key is
 * `active`; see policy/key-roles.ts). No private data exists to print.
 */
export function describeKey(k: KeyRecord, state: KeyListing['state'], trust?: RowTrust) {
  return {
    kid: k.kid,
    scope: k.scope,
    alg: k.alg,
    state,
    ...(trust === undefined ? {} : { trust }),
    publishAt: k.publishAt,
    activateAt: k.activateAt,
    retireAt: k.retireAt,
    expiresAt: k.expiresAt,
    revokedAt: k.revokedAt,
    revokedReason: k.revokedReason,
    destroyedAt: k.destroyedAt,
    backend: k.backendRef.backend,
    backendRef: k.backendRef.ref,
    createdAt: k.createdAt,
    createdBy: k.createdBy,
    publicJwk: k.publicJwk,
  };
}

export type KeyDescription = ReturnType<typeof describeKey>;

export const keysList = defineOperation({
  name: 'keys.list',
  summary: 'keys with their effective state now and how far each row is trusted',
  mutates: false,
  input: object({ scope: text() }),
  async run(kw, input: { scope?: string }) {
    return (await kw.listKeys(input.scope)).map((k) => describeKey(k.record, k.state, k.trust));
  },
});

export const keysShow = defineOperation({
  name: 'keys.show',
  summary: 'one key by kid or a unique kid prefix of 8+ characters',
  mutates: false,
  input: object({ kid: text() }, ['kid']),
  async run(kw, input: { kid: string }) {
    const k = await kw.findKey(input.kid);
    if (!k) throw new KeywardenError('KEY_NOT_FOUND', `no key with kid ${input.kid}`);
    return describeKey(k, kw.keyState(k));
  },
});

export const keysVerify = defineOperation({
  name: 'keys.verify',
  summary: 'every key row checked against its backend now',
  mutates: false,
  input: NO_INPUT,
  async run(kw) {
    const r = await kw.verifyKeys();
    const counts = { trusted: 0, dead: 0, refused: 0, unchecked: 0 };
    for (const t of r.trust.values()) counts[t] += 1;
    return { ok: r.ok, checkedAt: r.checkedAt, counts, refused: r.refused, missingRows: r.missingRows };
  },
});

export const keysRotate = defineOperation({
  name: 'keys.rotate',
  summary: "create a scope's next key now (normal prepublish)",
  mutates: true,
  input: object({ scope: text() }, ['scope']),
  async run(kw, input: { scope: string }, actor) {
    const k = await kw.rotate(input.scope, actor);
    return describeKey(k, kw.keyState(k));
  },
});

export const keysRevoke = defineOperation({
  name: 'keys.revoke',
  summary: 'revoke a key now; a replacement is made if needed',
  mutates: true,
  input: object({ kid: text(), reason: text(1000) }, ['kid', 'reason']),
  async run(kw, input: { kid: string; reason: string }, actor) {
    const r = await kw.revoke(input.kid, input.reason, actor);
    return {
      revoked: describeKey(r.revoked, kw.keyState(r.revoked)),
      destroyed: r.destroyed,
      replacement: r.replacement ? describeKey(r.replacement, kw.keyState(r.replacement)) : null,
    };
  },
});
