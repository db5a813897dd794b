/**
 * A hostile PKCS#11 client for the tests, run as its own process: it logs in with the real PIN
 * (the strongest attacker short of the SO) and tries every standard way to get private key
 * material out of, or other uses into, a keywarden key. Prints one JSON object: attack -> outcome.
 *
 *   node -r tsx/cjs pkcs11-attacker.ts <module> <tokenLabel> <idHex>   (PIN in KW_ATTACK_PIN)
 */
import * as pkcs11js from 'pkcs11js';

type Outcome = { ok: true; value?: string } | { ok: false; ckr: string };

function attempt(f: () => unknown): Outcome {
  try {
    const v = f();
    return {
      ok: true,
      value: Buffer.isBuffer(v) ? v.toString('hex') : v === undefined ? undefined : String(v),
    };
  } catch (e) {
    const m = /(CKR_[A-Z0-9_]+)(?::(\d+))?/.exec(
      e instanceof Error ? `${e.message} ${String(e.stack)}` : String(e),
    );
    // pkcs11js has no name for CKR_ACTION_PROHIBITED (0x1b) and reports `CKR_VENDOR_DEFINED:27`.
    if (m?.[1] === 'CKR_VENDOR_DEFINED' && m[2] === '27') return { ok: false, ckr: 'CKR_ACTION_PROHIBITED' };
    return { ok: false, ckr: m?.[1] ?? String(e) };
  }
}

function main(): void {
  const [modulePath, tokenLabel, idHex] = process.argv.slice(2);
  const pin = process.env.KW_ATTACK_PIN;
  if (!modulePath || !tokenLabel || !idHex || !pin) throw new Error('usage: <module> <tokenLabel> <idHex>');
  const p = new pkcs11js.PKCS11();
  p.load(modulePath);
  p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const out: Record<string, Outcome> = {};
  try {
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trimEnd() === tokenLabel);
    if (!slot) throw new Error(`token ${tokenLabel} not found`);
    const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p.C_Login(s, pkcs11js.CKU_USER, pin);
    const id = Buffer.from(idHex, 'hex');
    const find = (cls: number): Buffer => {
      p.C_FindObjectsInit(s, [
        { type: pkcs11js.CKA_CLASS, value: cls },
        { type: pkcs11js.CKA_ID, value: id },
      ]);
      const h = p.C_FindObjects(s);
      p.C_FindObjectsFinal(s);
      if (!h) throw new Error('key not found');
      return h;
    };
    const priv = find(pkcs11js.CKO_PRIVATE_KEY);
    const pub = find(pkcs11js.CKO_PUBLIC_KEY);
    const read = (h: Buffer, type: number) => () => p.C_GetAttributeValue(s, h, [{ type }])[0]?.value;
    const keyType = p
      .C_GetAttributeValue(s, priv, [{ type: pkcs11js.CKA_KEY_TYPE }])[0]
      ?.value.readUInt32LE(0);
    const rsa = keyType === pkcs11js.CKK_RSA;

    out.readValue = attempt(read(priv, pkcs11js.CKA_VALUE));
    out.readPrivateExponent = attempt(read(priv, pkcs11js.CKA_PRIVATE_EXPONENT));
    out.readPrime1 = attempt(read(priv, pkcs11js.CKA_PRIME_1));
    out.setSensitiveFalse = attempt(() =>
      p.C_SetAttributeValue(s, priv, [{ type: pkcs11js.CKA_SENSITIVE, value: false }]),
    );
    out.setExtractableTrue = attempt(() =>
      p.C_SetAttributeValue(s, priv, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
    );
    out.copyAsExtractable = attempt(() =>
      p.C_CopyObject(s, priv, [
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: false },
      ]),
    );
    // CKA_MODIFIABLE=false / CKA_COPYABLE=false: no attribute changes, no copies of either half.
    out.setLabel = attempt(() => p.C_SetAttributeValue(s, priv, [{ type: pkcs11js.CKA_LABEL, value: 'x' }]));
    out.setSignRecoverTrue = attempt(() =>
      p.C_SetAttributeValue(s, priv, [{ type: pkcs11js.CKA_SIGN_RECOVER, value: true }]),
    );
    out.setPublicLabel = attempt(() =>
      p.C_SetAttributeValue(s, pub, [{ type: pkcs11js.CKA_LABEL, value: 'x' }]),
    );
    out.copyPlain = attempt(() => p.C_CopyObject(s, priv, [{ type: pkcs11js.CKA_TOKEN, value: false }]));
    out.signRecoverInit = attempt(() =>
      p.C_SignRecoverInit(s, { mechanism: rsa ? pkcs11js.CKM_RSA_PKCS : pkcs11js.CKM_ECDSA }, priv),
    );
    const kek = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_TOKEN, value: false },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_WRAP, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: true },
    ]);
    out.wrapWithAes = attempt(() =>
      p.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, priv, Buffer.alloc(8192)),
    );
    out.useForDecryptOrDerive = rsa
      ? attempt(() => p.C_DecryptInit(s, { mechanism: pkcs11js.CKM_RSA_PKCS }, priv))
      : attempt(() =>
          p.C_DeriveKey(
            s,
            {
              mechanism: pkcs11js.CKM_ECDH1_DERIVE,
              parameter: {
                type: pkcs11js.CK_PARAMS_EC_DH,
                kdf: pkcs11js.CKD_NULL,
                publicData: Buffer.alloc(65, 4),
              } as pkcs11js.ECDH1,
            },
            priv,
            [
              { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
              { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_GENERIC_SECRET },
              { type: pkcs11js.CKA_TOKEN, value: false },
            ],
          ),
        );
    const flags: Array<[string, number]> = [
      ['alwaysSensitive', pkcs11js.CKA_ALWAYS_SENSITIVE],
      ['neverExtractable', pkcs11js.CKA_NEVER_EXTRACTABLE],
      ['sensitive', pkcs11js.CKA_SENSITIVE],
      ['extractable', pkcs11js.CKA_EXTRACTABLE],
      ['token', pkcs11js.CKA_TOKEN],
      ['private', pkcs11js.CKA_PRIVATE],
      ['sign', pkcs11js.CKA_SIGN],
      ['decrypt', pkcs11js.CKA_DECRYPT],
      ['unwrap', pkcs11js.CKA_UNWRAP],
      ['derive', pkcs11js.CKA_DERIVE],
      ['signRecover', pkcs11js.CKA_SIGN_RECOVER],
      ['modifiable', pkcs11js.CKA_MODIFIABLE],
      ['copyable', pkcs11js.CKA_COPYABLE],
    ];
    for (const [name, type] of flags) out[`flag:${name}`] = attempt(read(priv, type));
    out['flag:public:modifiable'] = attempt(read(pub, pkcs11js.CKA_MODIFIABLE));
    out['public:startDate'] = attempt(() => read(pub, pkcs11js.CKA_START_DATE)()?.toString('ascii'));
    out['public:endDate'] = attempt(() => read(pub, pkcs11js.CKA_END_DATE)()?.toString('ascii'));
    p.C_Logout(s);
    p.C_CloseSession(s);
  } finally {
    p.C_Finalize();
  }
  process.stdout.write(JSON.stringify(out));
}

main();
