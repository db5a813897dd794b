import type { KeyStore } from '../../src/lifecycle/ports';
import type { KeyBackend } from '../../src/backends/key-backend';
import { sealKey } from '../../src/lifecycle/generate-key';
import { thumbprint } from '../../src/policy/thumbprint';
import type { KeyRecord } from '../../src/policy/key';

/**
 * What a daemon killed in the middle of making `row`'s key leaves in the backend: the key pair
 * (`'generated'`: killed before sealing it) or the key pair and its seal over the row (`'sealed'`:
 * killed before completing the row). The row itself is the caller's (insertGenerating).
 */
export async function leaveKeyBehind(
  backend: KeyBackend,
  row: KeyRecord,
  stage: 'generated' | 'sealed',
): Promise<void> {
  const { publicJwk } = await backend.generate(row.backendRef, {
    alg: row.alg,
    scope: row.scope,
    keyId: row.id,
    notBefore: row.publishAt,
    notAfter: row.expiresAt,
  });
  if (stage === 'generated') return;
  await sealKey(backend, { ...row, kid: await thumbprint(publicJwk), publicJwk });
}

/**
 * A key as a release before sealing made it: row inserted, key pair generated, row completed,
 * and no seal (what a store upgraded from that release holds). Returns the completed row.
 */
export async function makeUnsealedKey(
  keys: Pick<KeyStore, 'insertGenerating' | 'completeGenerating'>,
  backend: KeyBackend,
  row: Omit<KeyRecord, 'kid' | 'publicJwk' | 'status' | 'backendRef'>,
  now: Date,
): Promise<KeyRecord> {
  const generating: KeyRecord = {
    ...row,
    kid: null,
    publicJwk: null,
    status: 'generating',
    backendRef: backend.planKey({ scope: row.scope, keyId: row.id }),
  };
  await keys.insertGenerating(generating, now);
  const { publicJwk } = await backend.generate(generating.backendRef, {
    alg: row.alg,
    scope: row.scope,
    keyId: row.id,
    notBefore: row.publishAt,
    notAfter: row.expiresAt,
  });
  const kid = await thumbprint(publicJwk);
  await keys.completeGenerating(row.id, { kid, publicJwk, backendRef: generating.backendRef }, now);
  return { ...generating, kid, publicJwk, status: 'ready' };
}
