/**
 * The integrity check's seal signatures in bulk: a start-up's batch runs on worker threads
 * (checkSeals), and a row tampered anywhere in it is refused as it is when checked alone.
 */
import * as assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { judgeFacts, judgeFactsAll, type SealedRow } from '../../../src/lifecycle/key-integrity';
import { checkHere, checkSeals, type SealCheck } from '../../../src/lifecycle/seal-checks';
import { thumbprintNow } from '../../../src/policy/thumbprint';
import type { BackendKeyFacts } from '../../../src/backends/key-backend';
import type { PublicJwk } from '../../../src/policy/key';
import { encodeSeal, sealInput } from '../../../src/policy/key-seal';

const HOUR = 3_600_000;

/** A key made and sealed as generate-key.ts does, with the facts its backend answers. */
function sealedKey(scope: string, curve: 'P-256' | 'P-384' = 'P-256') {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: curve });
  const publicJwk = publicKey.export({ format: 'jwk' }) as unknown as PublicJwk;
  const now = Date.now();
  const id = randomUUID();
  const row = {
    id,
    scope,
    alg: curve === 'P-256' ? 'ES256' : 'ES384',
    kid: thumbprintNow(publicJwk),
    publicJwk,
    backendRef: { backend: 'hsm', ref: { id, label: `keywarden:${scope}:${id}` } },
    publishAt: new Date(now),
    activateAt: new Date(now),
    retireAt: new Date(now + HOUR),
    expiresAt: new Date(now + 2 * HOUR),
    status: 'ready',
  } as unknown as SealedRow;
  const signature = sign(curve === 'P-256' ? 'sha256' : 'sha384', sealInput(row), {
    key: privateKey,
    dsaEncoding: 'ieee-p1363',
  });
  const facts: BackendKeyFacts = {
    publicJwk,
    keyId: id,
    scope,
    seal: encodeSeal(signature),
    validity: { notBefore: null, notAfter: null, precision: 'day' },
  };
  return { row, facts, signature };
}

describe('seal checks in bulk (worker threads)', function () {
  this.timeout(120_000);
  // Made once: 1,200 keys spread over more than two threads' chunks.
  const keys = Array.from({ length: 1200 }, (_, i) =>
    sealedKey(`tenant-${i}`, i % 100 === 7 ? 'P-384' : 'P-256'),
  );

  it('answers as the in-thread check does, in order, valid and tampered alike', async () => {
    const checks: SealCheck[] = keys.map((k, i) => ({
      alg: k.row.alg,
      jwk: k.facts.publicJwk,
      // Every 97th input changed by one byte, every 89th signature made by another key.
      input: i % 97 === 3 ? Buffer.concat([sealInput(k.row), Buffer.from(' ')]) : sealInput(k.row),
      signature: i % 89 === 5 ? keys[(i + 1) % keys.length]!.signature : k.signature,
    }));
    checks[600] = { ...checks[600]!, jwk: { ...checks[600]!.jwk, x: checks[601]!.jwk.x } };
    const threaded = await checkSeals(checks, {
      threadsFrom: 1,
      onThreadFailure: (e) => assert.fail(`the threads failed: ${e.message}`),
    });
    const here = await checkHere(checks);
    assert.deepEqual(threaded, here);
    for (const [i, outcome] of threaded.entries()) {
      const expected = i === 600 ? 'bad-key' : i % 97 === 3 || i % 89 === 5 ? 'invalid' : 'valid';
      assert.equal(outcome, expected, `check ${i}`);
    }
  });

  it('falls back to this thread, and says why, when the threads cannot take the batch', async () => {
    const checks: SealCheck[] = keys.slice(0, 20).map((k) => ({
      alg: k.row.alg,
      jwk: k.facts.publicJwk,
      input: sealInput(k.row),
      signature: k.signature,
    }));
    // A function cannot cross to a thread (DataCloneError); as a JWK member it makes no key.
    checks[4] = { ...checks[4]!, jwk: { ...checks[4]!.jwk, x: (() => 'x') as unknown as string } };
    const failures: Error[] = [];
    const outcomes = await checkSeals(checks, { threadsFrom: 1, onThreadFailure: (e) => failures.push(e) });
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /could not be cloned/);
    assert.deepEqual(
      outcomes,
      checks.map((_, i) => (i === 4 ? 'bad-key' : 'valid')),
    );
  });

  it('refuses a row tampered in a start-up-sized batch as judgeFacts refuses it alone', async () => {
    const items = keys.map((k) => ({ row: { ...k.row }, facts: { ...k.facts } }));
    // Re-scoped row (the seal no longer covers it), later expiry, another scope's object,
    // a public key swapped with its kid, a stripped seal, a seal that is not one.
    items[10]!.row.scope = 'tenant-11';
    items[10]!.facts.scope = 'tenant-11';
    items[250]!.row.expiresAt = new Date(items[250]!.row.expiresAt.getTime() + 365 * 24 * HOUR);
    items[500]!.facts = { ...keys[501]!.facts };
    items[750]!.row.publicJwk = keys[751]!.row.publicJwk;
    items[750]!.row.kid = keys[751]!.row.kid;
    items[900]!.facts.seal = null;
    items[1100]!.facts.seal = Buffer.from('v1.not-a-seal');
    const verdicts = await judgeFactsAll(items);
    const reasons = verdicts.map((v) => (v.ok ? 'ok' : v.reason));
    const expected = new Map<number, string>([
      [10, 'seal-invalid'],
      [250, 'seal-invalid'],
      [500, 'label-mismatch'],
      [750, 'public-key-mismatch'],
      [900, 'unsealed'],
      [1100, 'seal-invalid'],
    ]);
    for (const [i, reason] of reasons.entries()) assert.equal(reason, expected.get(i) ?? 'ok', `row ${i}`);
    for (const i of expected.keys()) {
      const alone = await judgeFacts(items[i]!.row, items[i]!.facts);
      assert.deepEqual(alone, verdicts[i], `row ${i} alone`);
    }
  });
});
