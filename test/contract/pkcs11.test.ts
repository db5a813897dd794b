import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { openPkcs11Backend, type Pkcs11Backend } from '../../src/backends/pkcs11';
import { SIGNING_ALGS, type SigningAlg } from '../../src/policy/algorithms';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { describeKeyBackendContract } from './key-backend.contract';
import { pkcs11Config, runAttacker, type AttackOutcome } from './pkcs11-fixture';

describeKeyBackendContract('PKCS#11 on SoftHSM2', async () => {
  const token = await createSoftHsmToken();
  const backend = await openPkcs11Backend(pkcs11Config(token));
  return {
    backend,
    algs: SIGNING_ALGS,
    teardown: async () => {
      await backend.close();
      await token.cleanup();
    },
  };
});

const ymd = (d: Date): string => d.toISOString().slice(0, 10).replace(/-/g, '');

function refused(o: AttackOutcome | undefined, what: string, ...ckrs: string[]): void {
  assert.ok(o, `${what}: no outcome`);
  assert.equal(o.ok, false, `${what} succeeded: ${JSON.stringify(o)}`);
  if (!o.ok && ckrs.length > 0)
    assert.ok(ckrs.includes(o.ckr), `${what}: ${o.ckr}, expected ${ckrs.join('|')}`);
}

function flag(out: Record<string, AttackOutcome>, name: string): boolean {
  const o = out[`flag:${name}`];
  assert.ok(o?.ok, `reading ${name} failed: ${JSON.stringify(o)}`);
  return o.value === '01';
}

describe('Pkcs11Backend on SoftHSM2: what a client holding the PIN cannot do with a key', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  let backend: Pkcs11Backend;

  before(async () => {
    token = await createSoftHsmToken();
    backend = await openPkcs11Backend(pkcs11Config(token));
  });

  after(async () => {
    await backend?.close();
    await token?.cleanup();
  });

  const attacked: SigningAlg[] = ['ES256', 'RS256', 'EdDSA'];
  for (const alg of attacked) {
    it(`${alg}: private parts unreadable, flags frozen, no wrap/copy/decrypt/derive/sign-recover, no changes, dates on the public key`, async () => {
      const keyId = randomUUID();
      const ref = backend.planKey({ scope: 'attack', keyId });
      const notBefore = new Date('2031-02-03T12:00:00Z');
      const notAfter = new Date('2031-05-06T12:00:00Z');
      await backend.generate(ref, { alg, scope: 'attack', keyId, notBefore, notAfter });
      const out = await runAttacker(token, ref.ref.id as string);

      if (alg === 'RS256') {
        refused(out.readPrivateExponent, 'reading CKA_PRIVATE_EXPONENT', 'CKR_ATTRIBUTE_SENSITIVE');
        refused(out.readPrime1, 'reading CKA_PRIME_1', 'CKR_ATTRIBUTE_SENSITIVE');
      } else {
        refused(out.readValue, 'reading CKA_VALUE', 'CKR_ATTRIBUTE_SENSITIVE');
      }
      // A non-modifiable (CKA_MODIFIABLE=false) object refuses every change with
      // CKR_ACTION_PROHIBITED before SoftHSM looks at the attribute; read-only ones say so.
      const frozen = ['CKR_ATTRIBUTE_READ_ONLY', 'CKR_ACTION_PROHIBITED'];
      refused(out.setSensitiveFalse, 'setting CKA_SENSITIVE=false', ...frozen);
      refused(out.setExtractableTrue, 'setting CKA_EXTRACTABLE=true', ...frozen);
      refused(out.copyAsExtractable, 'C_CopyObject as extractable', ...frozen);
      refused(out.setLabel, 'changing the private key label', 'CKR_ACTION_PROHIBITED');
      refused(out.setSignRecoverTrue, 'setting CKA_SIGN_RECOVER=true', 'CKR_ACTION_PROHIBITED');
      refused(out.setPublicLabel, 'changing the public key label', 'CKR_ACTION_PROHIBITED');
      refused(out.copyPlain, 'C_CopyObject (CKA_COPYABLE=false)', 'CKR_ACTION_PROHIBITED');
      // SoftHSM implements no sign-recover at all; CKA_SIGN_RECOVER=false says so on any module.
      refused(out.signRecoverInit, 'C_SignRecoverInit');
      refused(out.wrapWithAes, 'C_WrapKey', 'CKR_KEY_UNEXTRACTABLE');
      refused(
        out.useForDecryptOrDerive,
        'decrypt/derive with a signing key',
        'CKR_KEY_FUNCTION_NOT_PERMITTED',
      );

      assert.equal(flag(out, 'alwaysSensitive'), true, 'CKA_ALWAYS_SENSITIVE');
      assert.equal(flag(out, 'neverExtractable'), true, 'CKA_NEVER_EXTRACTABLE');
      assert.equal(flag(out, 'sensitive'), true, 'CKA_SENSITIVE');
      assert.equal(flag(out, 'extractable'), false, 'CKA_EXTRACTABLE');
      assert.equal(flag(out, 'token'), true, 'CKA_TOKEN');
      assert.equal(flag(out, 'private'), true, 'CKA_PRIVATE');
      assert.equal(flag(out, 'sign'), true, 'CKA_SIGN');
      for (const use of ['decrypt', 'unwrap', 'derive']) assert.equal(flag(out, use), false, `CKA_${use}`);
      assert.equal(flag(out, 'signRecover'), false, 'CKA_SIGN_RECOVER');
      assert.equal(flag(out, 'modifiable'), false, 'CKA_MODIFIABLE');
      assert.equal(flag(out, 'copyable'), false, 'CKA_COPYABLE');
      assert.equal(flag(out, 'public:modifiable'), false, 'CKA_MODIFIABLE of the public key');
      assert.deepEqual(out['public:startDate'], { ok: true, value: ymd(notBefore) });
      assert.deepEqual(out['public:endDate'], { ok: true, value: ymd(notAfter) });

      const listed = (await backend.list()).find((o) => o.keyId === keyId && o.kind === 'private');
      assert.deepEqual(listed?.attributes, {
        sensitive: true,
        extractable: false,
        alwaysSensitive: true,
        neverExtractable: true,
      });
      // Non-modifiable objects can still be destroyed (CKA_DESTROYABLE stays true).
      await backend.destroy(ref);
      assert.equal(await backend.exists(ref), false);
    });
  }
});
