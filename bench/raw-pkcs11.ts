/**
 * The raw PKCS#11 yardstick for the sign benchmark: C_SignInit + C_SignAsync on the same token
 * and key keywarden signs with, through pkcs11js, with no HTTP, no JWT and no JSON: 4 sessions,
 * 16 signatures in flight, 3 x 3 s. Prints `RESULT {"rate", "loopMicros"}`: signatures per
 * second and the event-loop (main thread) time each one costs, which bounds any Node signer on
 * this token. Run by bench/sign.ts in a process of its own (`node raw-pkcs11.js CONFIG_JSON`).
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as pkcs11js from 'pkcs11js';

interface Config {
  module: string;
  moduleEnv: Record<string, string>;
  tokenLabel: string;
  pin: string;
  ckaId: string;
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? '{}') as Config;
  Object.assign(process.env, c.moduleEnv);
  const pk = new pkcs11js.PKCS11();
  pk.load(c.module);
  pk.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const slot = pk.C_GetSlotList(true).find((s) => pk.C_GetTokenInfo(s).label.trim() === c.tokenLabel);
  if (!slot) throw new Error(`no token ${c.tokenLabel}`);
  const sessions = Array.from({ length: 4 }, () =>
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
  const mechanism = { mechanism: pkcs11js.CKM_ECDSA };
  const digest = createHash('sha256').update('header.payload').digest();
  const sign = async () => {
    const s = idle.pop() ?? (await new Promise<Buffer>((r) => waiting.push(r)));
    try {
      pk.C_SignInit(s, mechanism, key);
      return await pk.C_SignAsync(s, digest, Buffer.alloc(512));
    } finally {
      const next = waiting.shift();
      if (next) next(s);
      else idle.push(s);
    }
  };
  const run = async (ms: number) => {
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    let n = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (performance.now() - t0 < ms) {
          await sign();
          n++;
        }
      }),
    );
    const elu = performance.eventLoopUtilization(elu0);
    return { rate: n / ((performance.now() - t0) / 1000), loopMicros: (elu.active * 1000) / n };
  };
  await run(1000); // warm-up
  const reps = [await run(3000), await run(3000), await run(3000)].sort((a, b) => a.rate - b.rate);
  process.stdout.write(`RESULT ${JSON.stringify(reps[1])}\n`);
  process.exit(0);
}

void main();
