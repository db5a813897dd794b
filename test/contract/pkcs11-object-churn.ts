/**
 * A child process for pkcs11-object-lock.test.ts: opens a backend on a test token and, until its
 * time is up, either creates and destroys keys (`writer`) or lists every key and reads its facts
 * (`reader`), the two things SoftHSM2 2.6.1 cannot do at once in two processes. Prints how many
 * rounds it finished as JSON; a crash shows as the process's signal.
 *
 * argv: role, seconds, backend config as JSON (with pinValue).
 */
import { randomUUID } from 'node:crypto';
import { openPkcs11Backend } from '../../src/backends/pkcs11/open-pkcs11-backend';
import type { Pkcs11BackendConfig } from '../../src/backends/pkcs11/config';

async function main(): Promise<void> {
  const [role, seconds, json] = process.argv.slice(2) as [string, string, string];
  const backend = await openPkcs11Backend(JSON.parse(json) as Pkcs11BackendConfig & { pinValue: string });
  const end = Date.now() + Number(seconds) * 1000;
  let rounds = 0;
  const day = 86_400_000;
  while (Date.now() < end) {
    if (role === 'writer') {
      const keyId = randomUUID();
      const request = {
        scope: 'churn',
        keyId,
        alg: 'ES256' as const,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + day),
      };
      const ref = backend.planKey(request);
      await backend.generate(ref, request);
      if (rounds % 2 === 1) await backend.destroy(ref);
    } else {
      const keys = await backend.inventory();
      await backend.inspectKeys(keys.map((k) => ({ ref: k.ref, alg: 'ES256' as const })));
    }
    rounds += 1;
  }
  await backend.close();
  process.stdout.write(JSON.stringify({ role, rounds }));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
