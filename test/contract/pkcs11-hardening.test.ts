/**
 * The hardening attributes on a real SoftHSM2 2.6 token, through the same seam the backend uses
 * (Cryptoki + generateWithHardeningFallback): SoftHSM2 takes CKA_MODIFIABLE=false,
 * CKA_COPYABLE=false and CKA_SIGN_RECOVER=false, so nothing is dropped. It refuses none of them, so
 * a real refusal is provoked with a malformed CKA_COPYABLE value (CKR_ATTRIBUTE_VALUE_INVALID, what
 * a module answers for a value it does not take): the retry makes the key without the optional
 * hardening and with every mandatory attribute, and the key then carries SoftHSM2's defaults,
 * which `hsm check` reports (test/integration/hsm-check.test.ts plants such keys). The same
 * attributes also reach SoftHSM2 through p11-kit's RPC, the deployment shape.
 */
import { strict as assert } from 'node:assert';
import { randomBytes, randomUUID } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { CkError, isCkr } from '../../src/backends/pkcs11/ck-error';
import { Cryptoki, type Handle } from '../../src/backends/pkcs11/cryptoki';
import {
  generateWithHardeningFallback,
  keyPairTemplates,
  type KeyPairTemplates,
} from '../../src/backends/pkcs11/key-templates';
import { describeObject } from '../../src/backends/pkcs11/token-objects';
import type { SigningAlg } from '../../src/policy/algorithms';
import { openPkcs11Backend } from '../../src/backends/pkcs11';
import { startP11KitServer } from '../helpers/p11kit-server';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { pkcs11Config } from './pkcs11-fixture';

describe('key hardening on SoftHSM2: what the module takes, and the retry after a real refusal', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  let ck: Cryptoki;
  let session: Handle;

  before(async () => {
    token = await createSoftHsmToken();
    ck = Cryptoki.open(token.modulePath, token.env);
    const slot = ck.findTokenSlot(token.tokenLabel);
    assert.ok(slot);
    session = ck.openSession(slot);
    ck.login(slot, session, token.pin);
  });

  after(async () => {
    if (session) ck.closeSession(session);
    ck?.release();
    await token?.cleanup();
  });

  const templatesFor = (alg: SigningAlg) => {
    const id = randomBytes(16);
    return {
      id,
      t: keyPairTemplates({
        alg,
        rsaBits: 2048,
        id,
        label: `keywarden:hardening:${id.toString('hex')}`,
        notBefore: new Date('2030-01-01T00:00:00Z'),
        notAfter: new Date('2030-03-01T00:00:00Z'),
      }),
    };
  };

  /** The module's answers, in order: 'ok' or the CKR of the refusal. */
  const generateOnToken = (answers: string[]) => async (t: KeyPairTemplates) => {
    try {
      const kp = await ck.generateKeyPair(session, t.mechanism, t.publicTemplate, t.privateTemplate);
      answers.push('ok');
      return kp;
    } catch (e) {
      answers.push(e instanceof CkError ? e.ckr : String(e));
      throw e;
    }
  };

  const flag = (h: Handle, type: number): boolean | string => {
    const v = ck.tryGetAttribute(session, h, type);
    return v === undefined ? 'unreadable' : v[0] === 1;
  };

  const findById = (id: Buffer): Handle[] => ck.findObjects(session, [{ type: pkcs11js.CKA_ID, value: id }]);

  for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
    it(`${alg}: takes the full templates at once: nothing dropped, both halves non-modifiable, the private one non-copyable and without sign-recover`, async () => {
      const { t } = templatesFor(alg);
      const answers: string[] = [];
      const { keyPair, dropped } = await generateWithHardeningFallback(t, generateOnToken(answers));
      assert.deepEqual(answers, ['ok']);
      assert.deepEqual(dropped, []);
      const priv = describeObject(ck, session, keyPair.privateKey).attributes;
      assert.equal(priv.modifiable, false);
      assert.equal(priv.copyable, false);
      assert.equal(priv.signRecover, false);
      assert.equal(describeObject(ck, session, keyPair.publicKey).attributes.modifiable, false);
      // Non-modifiable does not mean indestructible: keywarden still destroys keys when they are due.
      ck.destroyObject(session, keyPair.privateKey);
      ck.destroyObject(session, keyPair.publicKey);
    });
  }

  it('after a real refusal of an optional attribute, retries once without the optional ones; the mandatory ones hold', async () => {
    const { id, t } = templatesFor('ES256');
    const malformed: KeyPairTemplates = {
      ...t,
      privateTemplate: t.privateTemplate.map((a) =>
        a.type === pkcs11js.CKA_COPYABLE ? { type: a.type, value: Buffer.from([0, 0, 0]) } : a,
      ),
    };
    const answers: string[] = [];
    const { keyPair, dropped, refusal } = await generateWithHardeningFallback(
      malformed,
      generateOnToken(answers),
    );
    assert.deepEqual(answers, ['CKR_ATTRIBUTE_VALUE_INVALID', 'ok']);
    assert.equal(refusal, 'CKR_ATTRIBUTE_VALUE_INVALID');
    assert.deepEqual(dropped, ['CKA_COPYABLE', 'CKA_MODIFIABLE', 'CKA_SIGN_RECOVER']);
    assert.equal(findById(id).length, 2, 'one key pair, nothing left from the refused attempt');

    const p = keyPair.privateKey;
    // I3 is intact ...
    assert.deepEqual(
      [
        flag(p, pkcs11js.CKA_TOKEN),
        flag(p, pkcs11js.CKA_PRIVATE),
        flag(p, pkcs11js.CKA_SENSITIVE),
        flag(p, pkcs11js.CKA_EXTRACTABLE),
        flag(p, pkcs11js.CKA_ALWAYS_SENSITIVE),
        flag(p, pkcs11js.CKA_NEVER_EXTRACTABLE),
        flag(p, pkcs11js.CKA_DECRYPT),
        flag(p, pkcs11js.CKA_UNWRAP),
        flag(p, pkcs11js.CKA_DERIVE),
      ],
      [true, true, true, false, true, true, false, false, false],
    );
    // ... and the dropped attributes are SoftHSM2's defaults, all on: what `hsm check` reports.
    assert.deepEqual(
      [flag(p, pkcs11js.CKA_MODIFIABLE), flag(p, pkcs11js.CKA_COPYABLE), flag(p, pkcs11js.CKA_SIGN_RECOVER)],
      [true, true, true],
    );
    assert.equal(flag(keyPair.publicKey, pkcs11js.CKA_MODIFIABLE), true);
    ck.destroyObject(session, keyPair.privateKey);
    ck.destroyObject(session, keyPair.publicKey);
  });

  it('a refused mandatory attribute is not dropped: both attempts fail and no key is made', async () => {
    const { id, t } = templatesFor('ES256');
    const malformed: KeyPairTemplates = {
      ...t,
      privateTemplate: t.privateTemplate.map((a) =>
        a.type === pkcs11js.CKA_SENSITIVE ? { type: a.type, value: Buffer.from([0, 0, 0]) } : a,
      ),
    };
    const answers: string[] = [];
    await assert.rejects(generateWithHardeningFallback(malformed, generateOnToken(answers)), (e) =>
      isCkr(e, 'CKR_ATTRIBUTE_VALUE_INVALID'),
    );
    assert.deepEqual(answers, ['CKR_ATTRIBUTE_VALUE_INVALID', 'CKR_ATTRIBUTE_VALUE_INVALID']);
    assert.deepEqual(findById(id), []);
  });

  // Last: closing the backend logs the token out of this process.
  it('through the backend: nothing is dropped on SoftHSM2, so no hardening warning is given', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(String(w.code));
    process.on('warning', onWarning);
    const backend = await openPkcs11Backend(pkcs11Config(token));
    try {
      for (const alg of ['ES256', 'RS256'] as const) {
        const keyId = randomUUID();
        const ref = backend.planKey({ scope: 'hardening', keyId });
        await backend.generate(ref, {
          alg,
          scope: 'hardening',
          keyId,
          notBefore: new Date(),
          notAfter: new Date(),
        });
        const listed = (await backend.listAllObjects()).filter((o) => o.keyId === keyId);
        assert.deepEqual(
          listed
            .map((o) => [o.class, o.attributes.modifiable, o.attributes.copyable, o.attributes.signRecover])
            .sort(),
          [
            ['private', false, false, false],
            ['public', false, true, undefined],
          ],
        );
      }
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      assert.ok(!warnings.includes('KEYWARDEN_PKCS11_HARDENING_DROPPED'), warnings.join(', '));
    } finally {
      process.off('warning', onWarning);
      await backend.close();
    }
  });

  it("behind p11-kit's RPC (the deployment shape), the hardening reaches SoftHSM2 unchanged", async () => {
    const server = await startP11KitServer(token);
    const backend = await openPkcs11Backend(
      pkcs11Config(token, { name: 'via-p11-kit', module: server.modulePath, moduleEnv: server.moduleEnv }),
    );
    try {
      const keyId = randomUUID();
      const ref = backend.planKey({ scope: 'hardening', keyId });
      await backend.generate(ref, {
        alg: 'ES256',
        scope: 'hardening',
        keyId,
        notBefore: new Date(),
        notAfter: new Date(),
      });
      const priv = (await backend.listAllObjects()).find((o) => o.keyId === keyId && o.class === 'private');
      assert.deepEqual(
        [priv?.attributes.modifiable, priv?.attributes.copyable, priv?.attributes.signRecover],
        [false, false, false],
      );
    } finally {
      await backend.close();
      await server.stop();
    }
  });
});
