/**
 * The raw PKCS#11 yardstick for the sign benchmark: C_SignInit + C_SignAsync on the same token
 * and key keywarden signs with, through pkcs11js, with no HTTP, no JWT and no JSON: 4 sessions,
 * 16 signatures in flight, 3 x 3 s. Prints `RESULT {"rate", "loopMicros", "cpuMicros",
 * "serverMicros"}`: signatures per second, the event-loop (main thread) time each one costs,
 * which bounds any Node signer on this token, this process's CPU time (all threads) per
 * signature, and, with `serverPid`, the CPU time per signature of that process tree (the
 * `p11-kit server` whose p11-kit-remote child serves this process's connection). Run by
 * bench/sign.ts and bench/p11kit.ts in a process of its own (`node raw-pkcs11.js CONFIG_JSON`);
 * the optional `sessions`, `inFlight`, `reps`, `seconds`, `warmupSeconds` change the defaults.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as pkcs11js from 'pkcs11js';
import { processTreeCpuUs } from './lib/machine';
import { openTokenSigner, type TokenKeyConfig } from './lib/token-signer';

export interface RawPkcs11Config extends Omit<TokenKeyConfig, 'sessions'> {
  sessions?: number;
  inFlight?: number;
  reps?: number;
  seconds?: number;
  warmupSeconds?: number;
  serverPid?: number;
}

export interface RawPkcs11Result {
  rate: number;
  loopMicros: number;
  cpuMicros: number;
  serverMicros: number | null;
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? '{}') as RawPkcs11Config;
  const sessions = c.sessions ?? 4;
  const inFlight = c.inFlight ?? Math.max(16, 2 * sessions);
  const signRaw = openTokenSigner({ ...c, sessions }, { mechanism: pkcs11js.CKM_ECDSA });
  const digest = createHash('sha256').update('header.payload').digest();
  const sign = () => signRaw(digest);
  const serverCpu = () => (c.serverPid === undefined ? Number.NaN : processTreeCpuUs(c.serverPid));
  const run = async (ms: number): Promise<RawPkcs11Result> => {
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    const server0 = serverCpu();
    const t0 = performance.now();
    let n = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() - t0 < ms) {
          await sign();
          n++;
        }
      }),
    );
    const elu = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const server = serverCpu() - server0;
    return {
      rate: n / ((performance.now() - t0) / 1000),
      loopMicros: (elu.active * 1000) / n,
      cpuMicros: (cpu.user + cpu.system) / n,
      serverMicros: Number.isNaN(server) ? null : server / n,
    };
  };
  await run((c.warmupSeconds ?? 1) * 1000); // warm-up
  const reps: RawPkcs11Result[] = [];
  for (let i = 0; i < (c.reps ?? 3); i++) reps.push(await run((c.seconds ?? 3) * 1000));
  reps.sort((a, b) => a.rate - b.rate);
  process.stdout.write(`RESULT ${JSON.stringify(reps[Math.floor(reps.length / 2)])}\n`);
  process.exit(0);
}

void main();
