/**
 * The key pair templates and the one retry without optional hardening, at the seam where the
 * module's answer comes in (a function standing in for C_GenerateKeyPair). What SoftHSM2 itself
 * does with the templates is in test/contract/pkcs11-hardening.test.ts.
 */
import { strict as assert } from 'node:assert';
import * as pkcs11js from 'pkcs11js';
import { CkError } from '../../../src/backends/pkcs11/ck-error';
import type { Attribute } from '../../../src/backends/pkcs11/cryptoki';
import {
  generateWithHardeningFallback,
  keyPairTemplates,
  OPTIONAL_HARDENING,
  withoutOptionalHardening,
  type KeyPairTemplates,
} from '../../../src/backends/pkcs11/key-templates';
import { SIGNING_ALGS } from '../../../src/policy/algorithms';

const templates = (alg: (typeof SIGNING_ALGS)[number] = 'ES256'): KeyPairTemplates =>
  keyPairTemplates({
    alg,
    rsaBits: 2048,
    id: Buffer.from('0a0b', 'hex'),
    label: 'keywarden:s:k',
    notBefore: new Date('2030-01-01T00:00:00Z'),
    notAfter: new Date('2030-06-01T00:00:00Z'),
  });

const value = (attrs: Attribute[], type: number): unknown => attrs.find((a) => a.type === type)?.value;
const has = (attrs: Attribute[], type: number): boolean => attrs.some((a) => a.type === type);

/** Everything the private half must always carry (I3), with the value it must have. */
const MANDATORY_PRIVATE: [string, number, boolean][] = [
  ['CKA_TOKEN', pkcs11js.CKA_TOKEN, true],
  ['CKA_PRIVATE', pkcs11js.CKA_PRIVATE, true],
  ['CKA_SENSITIVE', pkcs11js.CKA_SENSITIVE, true],
  ['CKA_EXTRACTABLE', pkcs11js.CKA_EXTRACTABLE, false],
  ['CKA_SIGN', pkcs11js.CKA_SIGN, true],
  ['CKA_DECRYPT', pkcs11js.CKA_DECRYPT, false],
  ['CKA_UNWRAP', pkcs11js.CKA_UNWRAP, false],
  ['CKA_DERIVE', pkcs11js.CKA_DERIVE, false],
];

describe('PKCS#11 key pair templates', () => {
  for (const alg of SIGNING_ALGS) {
    it(`${alg}: the private half cannot be modified, copied or sign-recover; the public half cannot be modified`, () => {
      const t = templates(alg);
      assert.equal(value(t.privateTemplate, pkcs11js.CKA_MODIFIABLE), false);
      assert.equal(value(t.privateTemplate, pkcs11js.CKA_COPYABLE), false);
      assert.equal(value(t.privateTemplate, pkcs11js.CKA_SIGN_RECOVER), false);
      assert.equal(value(t.publicTemplate, pkcs11js.CKA_MODIFIABLE), false);
      for (const [name, type, v] of MANDATORY_PRIVATE) assert.equal(value(t.privateTemplate, type), v, name);
    });
  }

  it('the reduced templates leave out exactly the optional hardening, and say so', () => {
    for (const alg of SIGNING_ALGS) {
      const t = templates(alg);
      const before = JSON.stringify(t);
      const r = withoutOptionalHardening(t);
      assert.deepEqual(r.dropped, ['CKA_COPYABLE', 'CKA_MODIFIABLE', 'CKA_SIGN_RECOVER']);
      for (const type of OPTIONAL_HARDENING.keys()) {
        assert.equal(has(r.templates.privateTemplate, type), false);
        assert.equal(has(r.templates.publicTemplate, type), false);
      }
      for (const [name, type, v] of MANDATORY_PRIVATE) {
        assert.equal(value(r.templates.privateTemplate, type), v, `${alg}: ${name} kept`);
      }
      // Everything else is kept as it was, in order.
      const optional = (a: Attribute) => OPTIONAL_HARDENING.has(a.type);
      assert.deepEqual(
        r.templates.privateTemplate,
        t.privateTemplate.filter((a) => !optional(a)),
      );
      assert.deepEqual(
        r.templates.publicTemplate,
        t.publicTemplate.filter((a) => !optional(a)),
      );
      assert.equal(r.templates.mechanism, t.mechanism);
      assert.equal(JSON.stringify(t), before, 'the input is not changed');
    }
  });

  it('nothing is dropped from templates that hold no optional hardening', () => {
    const r = withoutOptionalHardening(withoutOptionalHardening(templates()).templates);
    assert.deepEqual(r.dropped, []);
  });
});

describe('generateWithHardeningFallback', () => {
  /** A module that does not know CKA_COPYABLE, answering with `ckr` while it is in the template. */
  const refusingCopyable = (ckr: string) => {
    const calls: KeyPairTemplates[] = [];
    const generate = (t: KeyPairTemplates): Promise<string> => {
      calls.push(t);
      if (has(t.privateTemplate, pkcs11js.CKA_COPYABLE)) {
        return Promise.reject(new CkError(ckr, null, 'C_GenerateKeyPair'));
      }
      return Promise.resolve('key pair');
    };
    return { calls, generate };
  };

  it('uses the full templates when the module takes them', async () => {
    const m = refusingCopyable('CKR_ATTRIBUTE_TYPE_INVALID');
    const t = withoutOptionalHardening(templates()).templates;
    t.privateTemplate.push({ type: pkcs11js.CKA_MODIFIABLE, value: false });
    const r = await generateWithHardeningFallback(t, m.generate);
    assert.deepEqual(r, { keyPair: 'key pair', dropped: [], refusal: null });
    assert.equal(m.calls.length, 1);
    assert.equal(m.calls[0], t);
  });

  for (const ckr of [
    'CKR_ATTRIBUTE_TYPE_INVALID',
    'CKR_ATTRIBUTE_VALUE_INVALID',
    'CKR_TEMPLATE_INCONSISTENT',
  ]) {
    it(`retries once without the optional hardening on ${ckr}, and names what it left out`, async () => {
      const m = refusingCopyable(ckr);
      const t = templates();
      const r = await generateWithHardeningFallback(t, m.generate);
      assert.deepEqual(r, {
        keyPair: 'key pair',
        dropped: ['CKA_COPYABLE', 'CKA_MODIFIABLE', 'CKA_SIGN_RECOVER'],
        refusal: ckr,
      });
      assert.equal(m.calls.length, 2);
      assert.deepEqual(m.calls[1], withoutOptionalHardening(t).templates);
    });
  }

  it('does not retry other failures', async () => {
    for (const e of [new CkError('CKR_DEVICE_MEMORY', null, 'C_GenerateKeyPair'), new Error('boom')]) {
      let calls = 0;
      await assert.rejects(
        generateWithHardeningFallback(templates(), () => {
          calls += 1;
          return Promise.reject(e);
        }),
        (got) => got === e,
      );
      assert.equal(calls, 1);
    }
  });

  it('retries only once, and gives the second refusal (the mandatory attributes are never dropped)', async () => {
    const first = new CkError('CKR_TEMPLATE_INCONSISTENT', null, 'C_GenerateKeyPair');
    const second = new CkError('CKR_ATTRIBUTE_VALUE_INVALID', null, 'C_GenerateKeyPair');
    const calls: KeyPairTemplates[] = [];
    await assert.rejects(
      generateWithHardeningFallback(templates(), (t) => {
        calls.push(t);
        return Promise.reject(calls.length === 1 ? first : second);
      }),
      (got) => got === second,
    );
    assert.equal(calls.length, 2);
    for (const [name, type, v] of MANDATORY_PRIVATE)
      assert.equal(value(calls[1]!.privateTemplate, type), v, name);
  });

  it('names only the optional attributes the templates held', async () => {
    const m = refusingCopyable('CKR_ATTRIBUTE_TYPE_INVALID');
    const t = withoutOptionalHardening(templates()).templates;
    t.privateTemplate.push({ type: pkcs11js.CKA_COPYABLE, value: false });
    const r = await generateWithHardeningFallback(t, m.generate);
    assert.deepEqual(r.dropped, ['CKA_COPYABLE']);
    assert.equal(m.calls.length, 2);
  });

  it('does not retry when there was nothing optional to leave out', async () => {
    const bare = withoutOptionalHardening(templates()).templates;
    const refusal = new CkError('CKR_TEMPLATE_INCONSISTENT', null, 'C_GenerateKeyPair');
    let calls = 0;
    await assert.rejects(
      generateWithHardeningFallback(bare, () => {
        calls += 1;
        return Promise.reject(refusal);
      }),
      (e) => e === refusal,
    );
    assert.equal(calls, 1);
  });
});
