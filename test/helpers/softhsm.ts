import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where distributions put the SoftHSM2 module; SOFTHSM2_MODULE overrides. */
const MODULE_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

/** A fresh SoftHSM2 token in its own directory, made for one test run. */
export interface SoftHsmToken {
  modulePath: string;
  tokenLabel: string;
  pin: string;
  soPin: string;
  /** The SOFTHSM2_CONF file that points the module at `dir`. */
  confPath: string;
  dir: string;
  /** What the module must see in its environment (a backend's `moduleEnv`). */
  env: { SOFTHSM2_CONF: string };
  /** Removes the token directory. Close every backend on the token first. */
  cleanup(): Promise<void>;
}

/** Path of the installed SoftHSM2 PKCS#11 module; a clear error when SoftHSM2 is missing. */
export function softHsmModulePath(): string {
  const candidates = process.env.SOFTHSM2_MODULE ? [process.env.SOFTHSM2_MODULE] : MODULE_CANDIDATES;
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `SoftHSM2 module not found (looked at ${candidates.join(', ')}). Install SoftHSM2 ` +
        '(Debian/Ubuntu: apt-get install softhsm2) or set SOFTHSM2_MODULE to libsofthsm2.so.',
    );
  }
  return found;
}

/**
 * Creates a temp token dir, a SoftHSM2 config pointing at it and one initialised token with random
 * user and SO PINs (via softhsm2-util, the same tool hsm/init-token.sh uses).
 */
export async function createSoftHsmToken(opts: { label?: string } = {}): Promise<SoftHsmToken> {
  const modulePath = softHsmModulePath();
  const tokenLabel = opts.label ?? `kw-test-${randomBytes(4).toString('hex')}`;
  const pin = randomBytes(12).toString('base64url');
  const soPin = randomBytes(12).toString('base64url');
  const dir = await mkdtemp(join(tmpdir(), 'keywarden-softhsm-'));
  const tokens = join(dir, 'tokens');
  await mkdir(tokens, { mode: 0o700 });
  const confPath = join(dir, 'softhsm2.conf');
  await writeFile(
    confPath,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`,
    { mode: 0o600 },
  );
  const env = { SOFTHSM2_CONF: confPath };
  try {
    await run(
      'softhsm2-util',
      ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', soPin],
      {
        env: { ...process.env, ...env },
      },
    );
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new Error('softhsm2-util not found: install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2)', {
        cause: e,
      });
    }
    throw new Error(`softhsm2-util --init-token failed: ${err.stderr ?? err.message}`, { cause: e });
  }
  return {
    modulePath,
    tokenLabel,
    pin,
    soPin,
    confPath,
    dir,
    env,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
