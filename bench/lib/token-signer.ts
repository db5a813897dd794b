/**
 * Direct pkcs11js signing on a token key, for the yardsticks (the ideal HTTP signer and the raw
 * PKCS#11 loop): opens `sessions` sessions, logs in, finds the private key by CKA_ID and returns
 * a signer that runs C_SignInit + C_SignAsync on a free session. No keywarden code on the path.
 */
import * as pkcs11js from 'pkcs11js';

export interface TokenKeyConfig {
  module: string;
  moduleEnv: Record<string, string>;
  tokenLabel: string;
  pin: string;
  ckaId: string;
  sessions: number;
}

/** Signs `data` as given (a digest for CKM_ECDSA, the message for the others). */
export type RawSigner = (data: Buffer) => Promise<Buffer>;

export function openTokenSigner(c: TokenKeyConfig, mechanism: pkcs11js.Mechanism): RawSigner {
  Object.assign(process.env, c.moduleEnv);
  const pk = new pkcs11js.PKCS11();
  pk.load(c.module);
  pk.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const slot = pk.C_GetSlotList(true).find((s) => pk.C_GetTokenInfo(s).label.trim() === c.tokenLabel);
  if (!slot) throw new Error(`no token ${c.tokenLabel}`);
  const sessions = Array.from({ length: c.sessions }, () =>
    pk.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION),
  );
  pk.C_Login(sessions[0]!, pkcs11js.CKU_USER, c.pin);
  pk.C_FindObjectsInit(sessions[0]!, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_ID, value: Buffer.from(c.ckaId, 'hex') },
  ]);
  const key = pk.C_FindObjects(sessions[0]!, 1)[0];
  pk.C_FindObjectsFinal(sessions[0]!);
  if (!key) throw new Error(`no private key with CKA_ID ${c.ckaId}`);

  const idle = [...sessions];
  const waiting: ((s: Buffer) => void)[] = [];
  const acquire = () =>
    idle.length > 0 ? Promise.resolve(idle.pop()!) : new Promise<Buffer>((r) => waiting.push(r));
  const release = (s: Buffer) => {
    const next = waiting.shift();
    if (next) next(s);
    else idle.push(s);
  };
  return async (data) => {
    const s = await acquire();
    try {
      pk.C_SignInit(s, mechanism, key);
      return await pk.C_SignAsync(s, data, Buffer.alloc(512));
    } finally {
      release(s);
    }
  };
}
