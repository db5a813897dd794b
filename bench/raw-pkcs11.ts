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
import { openTokenSigner, type TokenKeyConfig } from './lib/token-signer';

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? '{}') as Omit<TokenKeyConfig, 'sessions'>;
  const signRaw = openTokenSigner({ ...c, sessions: 4 }, { mechanism: pkcs11js.CKM_ECDSA });
  const digest = createHash('sha256').update('header.payload').digest();
  const sign = () => signRaw(digest);
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
