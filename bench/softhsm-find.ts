/**
 * Child process of the scale benchmark: SoftHSM2 alone (pkcs11js, one session), the cost of a
 * C_FindObjects by CKA_ID and of C_GenerateKeyPair as the token fills with P-256 key pairs.
 * Prints `RESULT <json>`.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as pkcs11js from 'pkcs11js';
import { createSoftHsmToken } from '../test/helpers/softhsm';
import { ms } from './lib/stats';

const P256 = Buffer.from('06082a8648ce3d030107', 'hex');
const STEPS = [0, 500, 2000];
const FINDS = 20;

async function main(): Promise<void> {
  const t = await createSoftHsmToken();
  try {
    process.env.SOFTHSM2_CONF = t.confPath;
    const pk = new pkcs11js.PKCS11();
    pk.load(t.modulePath);
    pk.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    const slot = pk.C_GetSlotList(true).find((s) => pk.C_GetTokenInfo(s).label.trim() === t.tokenLabel)!;
    const s = pk.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    pk.C_Login(s, pkcs11js.CKU_USER, t.pin);
    const rows: (string | number)[][] = [];
    let keys = 0;
    for (const target of STEPS) {
      const g0 = performance.now();
      const batch = target - keys;
      for (; keys < target; keys++) {
        const id = randomBytes(16);
        pk.C_GenerateKeyPair(
          s,
          { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
          [
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_VERIFY, value: true },
            { type: pkcs11js.CKA_EC_PARAMS, value: P256 },
            { type: pkcs11js.CKA_ID, value: id },
          ],
          [
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_SIGN, value: true },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: false },
            { type: pkcs11js.CKA_ID, value: id },
          ],
        );
      }
      const genMs = batch > 0 ? (performance.now() - g0) / batch : Number.NaN;
      const f0 = performance.now();
      for (let i = 0; i < FINDS; i++) {
        pk.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_ID, value: randomBytes(16) }]);
        pk.C_FindObjects(s, 10);
        pk.C_FindObjectsFinal(s);
      }
      rows.push([
        keys,
        keys * 2,
        ms((performance.now() - f0) / FINDS),
        batch > 0 ? `${ms(genMs)} (keys ${keys - batch}..${keys})` : '-',
      ]);
      process.stderr.write(`  softhsm: ${JSON.stringify(rows[rows.length - 1])}\n`);
    }
    pk.C_Logout(s);
    pk.C_CloseSession(s);
    pk.C_Finalize();
    process.stdout.write(`RESULT ${JSON.stringify({ rows })}\n`);
  } finally {
    await t.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    process.stderr.write(`${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
