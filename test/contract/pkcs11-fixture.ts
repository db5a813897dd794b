import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { strict as assert } from 'node:assert';
import type { Pkcs11BackendConfig } from '../../src/backends/pkcs11/config';
import { Cryptoki } from '../../src/backends/pkcs11/cryptoki';
import type { SoftHsmToken } from '../helpers/softhsm';
import type { Plant } from './pkcs11-planter';

const run = promisify(execFile);

/** A backend config (with the PIN value resolved) for a test token. */
export function pkcs11Config(
  token: SoftHsmToken,
  overrides: Partial<Pkcs11BackendConfig & { pinValue: string }> = {},
): Pkcs11BackendConfig & { pinValue: string } {
  return {
    type: 'pkcs11',
    name: 'hsm-test',
    module: token.modulePath,
    tokenLabel: token.tokenLabel,
    pin: { env: 'KEYWARDEN_TEST_PIN' },
    moduleEnv: token.env,
    sessions: 4,
    pinValue: token.pin,
    ...overrides,
  };
}

export type AttackOutcome = { ok: true; value?: string } | { ok: false; ckr: string };

/** Runs test/contract/pkcs11-attacker.ts in its own process against one key. */
export async function runAttacker(
  token: SoftHsmToken,
  idHex: string,
): Promise<Record<string, AttackOutcome>> {
  const { stdout } = await run(
    process.execPath,
    [
      '--require',
      require.resolve('tsx/cjs'),
      join(__dirname, 'pkcs11-attacker.ts'),
      token.modulePath,
      token.tokenLabel,
      idHex,
    ],
    { env: { ...process.env, ...token.env, KW_ATTACK_PIN: token.pin }, timeout: 60_000 },
  );
  return JSON.parse(stdout) as Record<string, AttackOutcome>;
}

/**
 * Runs test/contract/pkcs11-planter.ts in its own process: plants objects on the token (key pairs
 * with chosen attributes, data objects, deleted halves). Fails the test if any plant failed.
 */
export async function runPlanter(token: SoftHsmToken, plants: Plant[]): Promise<void> {
  const { stdout } = await run(
    process.execPath,
    [
      '--require',
      require.resolve('tsx/cjs'),
      join(__dirname, 'pkcs11-planter.ts'),
      token.modulePath,
      token.tokenLabel,
      JSON.stringify(plants),
    ],
    { env: { ...process.env, ...token.env, KW_PLANT_PIN: token.pin }, timeout: 60_000 },
  );
  const { failed } = JSON.parse(stdout) as { failed: string[] };
  if (failed.length > 0) throw new Error(`planting failed:\n${failed.join('\n')}`);
}

/** Runs OpenSC's pkcs11-tool (a third-party client, in another process) logged in to the token. */
export async function pkcs11Tool(token: SoftHsmToken, args: string[]): Promise<string> {
  const { stdout } = await run(
    'pkcs11-tool',
    ['--module', token.modulePath, '--token-label', token.tokenLabel, '--login', '--pin', token.pin, ...args],
    { env: { ...process.env, ...token.env }, timeout: 60_000 },
  );
  return stdout;
}

/**
 * What any other part of the process (or a token hiccup) can do: close every session of the token,
 * and with them the login, behind a backend's back.
 */
export function dropAllSessions(token: SoftHsmToken): void {
  const ck = Cryptoki.open(token.modulePath, token.env);
  try {
    const slot = ck.findTokenSlot(token.tokenLabel);
    assert.ok(slot);
    ck.closeAllSessions(slot);
  } finally {
    ck.release();
  }
}
