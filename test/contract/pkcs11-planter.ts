/**
 * Plants objects on a token behind keywarden's back, as another PKCS#11 client in its own process
 * would: key pairs with chosen attributes, data objects (key seals among them), and deletions of
 * single halves. For the `hsm check` tests. Prints the CKR of each step that failed (none, normally).
 *
 *   node -r tsx/cjs pkcs11-planter.ts <module> <tokenLabel> '<plants as JSON>'   (PIN in KW_PLANT_PIN)
 */
import * as pkcs11js from 'pkcs11js';

/** Boolean attributes a plant may set, by the names TokenObjectAttributes uses. */
const FLAGS: Readonly<Record<string, number>> = {
  private: pkcs11js.CKA_PRIVATE,
  sensitive: pkcs11js.CKA_SENSITIVE,
  extractable: pkcs11js.CKA_EXTRACTABLE,
  sign: pkcs11js.CKA_SIGN,
  signRecover: pkcs11js.CKA_SIGN_RECOVER,
  decrypt: pkcs11js.CKA_DECRYPT,
  unwrap: pkcs11js.CKA_UNWRAP,
  derive: pkcs11js.CKA_DERIVE,
  modifiable: pkcs11js.CKA_MODIFIABLE,
  copyable: pkcs11js.CKA_COPYABLE,
  verify: pkcs11js.CKA_VERIFY,
};

export type Plant =
  | {
      op: 'keypair';
      keyType: 'EC' | 'RSA';
      label: string;
      idHex: string;
      /** Flags set on the private half on top of a hardened signing key (null: leave it out). */
      private?: Record<string, boolean | null>;
      public?: Record<string, boolean | null>;
    }
  | { op: 'data'; label: string; application?: string; valueHex: string; modifiable?: boolean }
  /**
   * A P-256 key pair whose private scalar was made outside the token and imported (sensitive,
   * non-extractable from then on): a key that can exist elsewhere too, as a leaked one does.
   */
  | { op: 'import-ec'; label: string; idHex: string; dHex: string; xHex: string; yHex: string }
  | { op: 'destroy'; class: 'private' | 'public' | 'data'; label: string; idHex?: string };

/** What keywarden's own template gives a private key: the baseline each plant deviates from. */
const HARDENED_PRIVATE: Record<string, boolean> = {
  private: true,
  sensitive: true,
  extractable: false,
  sign: true,
  signRecover: false,
  decrypt: false,
  unwrap: false,
  derive: false,
  modifiable: false,
  copyable: false,
};
const HARDENED_PUBLIC: Record<string, boolean> = { private: false, verify: true, modifiable: false };

function flags(
  base: Record<string, boolean>,
  over: Record<string, boolean | null> = {},
): pkcs11js.Attribute[] {
  const merged: Record<string, boolean | null> = { ...base, ...over };
  return Object.entries(merged)
    .filter((e): e is [string, boolean] => e[1] !== null)
    .map(([name, value]) => {
      const type = FLAGS[name];
      if (type === undefined) throw new Error(`unknown flag ${name}`);
      return { type, value };
    });
}

const CLASSES = {
  private: pkcs11js.CKO_PRIVATE_KEY,
  public: pkcs11js.CKO_PUBLIC_KEY,
  data: pkcs11js.CKO_DATA,
} as const;

function main(): void {
  const [modulePath, tokenLabel, json] = process.argv.slice(2);
  const pin = process.env.KW_PLANT_PIN;
  if (!modulePath || !tokenLabel || !json || !pin) throw new Error('usage: <module> <tokenLabel> <plants>');
  const plants = JSON.parse(json) as Plant[];
  const p = new pkcs11js.PKCS11();
  p.load(modulePath);
  p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const failed: string[] = [];
  try {
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trimEnd() === tokenLabel);
    if (!slot) throw new Error(`token ${tokenLabel} not found`);
    const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    p.C_Login(s, pkcs11js.CKU_USER, pin);
    for (const plant of plants) {
      try {
        if (plant.op === 'keypair') {
          const common: pkcs11js.Attribute[] = [
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_LABEL, value: plant.label },
            { type: pkcs11js.CKA_ID, value: Buffer.from(plant.idHex, 'hex') },
          ];
          const rsa = plant.keyType === 'RSA';
          p.C_GenerateKeyPair(
            s,
            { mechanism: rsa ? pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN : pkcs11js.CKM_EC_KEY_PAIR_GEN },
            [
              ...common,
              ...(rsa
                ? [
                    { type: pkcs11js.CKA_MODULUS_BITS, value: 2048 },
                    { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
                  ]
                : [{ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') }]),
              ...flags(HARDENED_PUBLIC, plant.public),
            ],
            [...common, ...flags(HARDENED_PRIVATE, plant.private)],
          );
        } else if (plant.op === 'import-ec') {
          const common: pkcs11js.Attribute[] = [
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_LABEL, value: plant.label },
            { type: pkcs11js.CKA_ID, value: Buffer.from(plant.idHex, 'hex') },
            { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_EC },
            { type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') },
          ];
          const point = Buffer.concat([
            Buffer.from([0x04, 0x41, 0x04]),
            Buffer.from(plant.xHex + plant.yHex, 'hex'),
          ]);
          p.C_CreateObject(s, [
            ...common,
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
            { type: pkcs11js.CKA_EC_POINT, value: point },
            ...flags(HARDENED_PUBLIC),
          ]);
          p.C_CreateObject(s, [
            ...common,
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
            { type: pkcs11js.CKA_VALUE, value: Buffer.from(plant.dHex, 'hex') },
            ...flags(HARDENED_PRIVATE),
          ]);
        } else if (plant.op === 'data') {
          p.C_CreateObject(s, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_LABEL, value: plant.label },
            ...(plant.application === undefined
              ? []
              : [{ type: pkcs11js.CKA_APPLICATION, value: plant.application }]),
            { type: pkcs11js.CKA_VALUE, value: Buffer.from(plant.valueHex, 'hex') },
            ...(plant.modifiable === undefined
              ? []
              : [{ type: pkcs11js.CKA_MODIFIABLE, value: plant.modifiable }]),
          ]);
        } else {
          p.C_FindObjectsInit(s, [
            { type: pkcs11js.CKA_CLASS, value: CLASSES[plant.class] },
            { type: pkcs11js.CKA_LABEL, value: plant.label },
            ...(plant.idHex === undefined
              ? []
              : [{ type: pkcs11js.CKA_ID, value: Buffer.from(plant.idHex, 'hex') }]),
          ]);
          const handles = p.C_FindObjects(s, 16);
          p.C_FindObjectsFinal(s);
          if (handles.length === 0) throw new Error(`nothing to destroy: ${JSON.stringify(plant)}`);
          for (const h of handles) p.C_DestroyObject(s, h);
        }
      } catch (e) {
        failed.push(`${JSON.stringify(plant)}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    p.C_Logout(s);
    p.C_CloseSession(s);
  } finally {
    p.C_Finalize();
  }
  process.stdout.write(JSON.stringify({ failed }));
}

main();
