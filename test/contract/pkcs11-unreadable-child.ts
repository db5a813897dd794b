/**
 * Run by pkcs11-unreadable-token.test.ts as a user other than root (root reads a directory whatever
 * its mode): opens a Pkcs11Backend on the token, signs, makes the token directory unreadable
 * (mode 000) for `KW_AWAY_MS`, signing all along, gives it back and signs until it works. Prints
 * one JSON line: what each attempt while away answered, the health then, and how long after the
 * return the first signature took.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { openPkcs11Backend } from '../../src/backends/pkcs11';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

async function main(): Promise<void> {
  const dir = env('KW_TOKEN_DIR');
  const awayMs = Number(env('KW_AWAY_MS'));
  const backend = await openPkcs11Backend(
    {
      type: 'pkcs11',
      name: 'hsm-test',
      module: env('KW_MODULE'),
      tokenLabel: env('KW_TOKEN_LABEL'),
      pin: { env: 'KW_PIN' },
      moduleEnv: { SOFTHSM2_CONF: join(dir, 'softhsm2.conf') },
      sessions: 2,
      pinValue: env('KW_PIN'),
    },
    { recovery: { initialDelayMs: 100, maxDelayMs: 500 } },
  );
  const keyId = randomUUID();
  const ref = backend.planKey({ scope: 'unreadable', keyId });
  const now = Date.now();
  await backend.generate(ref, {
    alg: 'ES256',
    scope: 'unreadable',
    keyId,
    notBefore: new Date(now),
    notAfter: new Date(now + 3.6e6),
  });
  await backend.sign(ref, 'ES256', Buffer.from('before'));
  const tokens = join(dir, 'tokens');
  chmodSync(tokens, 0o000);
  const whileAway: string[] = [];
  let healthAway: { ok: boolean; detail: string } | undefined;
  try {
    const started = Date.now();
    while (Date.now() - started < awayMs) {
      try {
        await backend.sign(ref, 'ES256', Buffer.from('away'));
        whileAway.push('signed');
      } catch (e) {
        whileAway.push((e as { code?: string }).code ?? (e as Error).message);
      }
      healthAway ??= await backend.health();
      await sleep(200);
    }
  } finally {
    chmodSync(tokens, 0o700);
  }
  const back = Date.now();
  let signedAfterMs: number | null = null;
  let lastError = '';
  while (Date.now() - back < 15_000) {
    try {
      await backend.sign(ref, 'ES256', Buffer.from('back'));
      signedAfterMs = Date.now() - back;
      break;
    } catch (e) {
      lastError = (e as Error).message;
      await sleep(100);
    }
  }
  const exists = await backend.exists(ref);
  const healthBack = await backend.health();
  await backend.close();
  process.stdout.write(
    `${JSON.stringify({ uid: process.getuid?.(), whileAway, healthAway, signedAfterMs, lastError, exists, healthBack })}\n`,
  );
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
