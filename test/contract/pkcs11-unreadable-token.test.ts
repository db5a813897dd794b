import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chownSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { canSwitchUsers, ensureUser } from '../helpers/os-users';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

const run = promisify(execFile);

interface ChildReport {
  uid: number;
  whileAway: string[];
  healthAway?: { ok: boolean; detail: string };
  signedAfterMs: number | null;
  lastError: string;
  exists: boolean;
  healthBack: { ok: boolean; detail: string };
}

/** Gives `path` and everything under it to `uid` (the token's files, as its owner would have them). */
function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const p = join(path, entry.name);
    if (entry.isDirectory()) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}

/**
 * #18 item 1: "the token directory was made unreadable ... for 5 seconds and then restored". The
 * backend runs as an ordinary user (as the daemon does under systemd), since root reads a
 * directory of any mode. While the token is unreadable every signature fails with
 * BACKEND_UNAVAILABLE (never "no such key"), health says so, and it signs again within 10 s of
 * the directory's return, in the same process.
 */
describe('Pkcs11Backend heals after the token directory was unreadable for 5 s', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  const user = 'kw-test-hsmuser';

  before(async function () {
    if (!canSwitchUsers()) this.skip(); // needs root and setpriv to run the backend as another user
    token = await createSoftHsmToken();
  });

  after(async () => {
    await token?.cleanup();
  });

  it('answers BACKEND_UNAVAILABLE while unreadable, and signs again within 10 s of its return', async () => {
    const uid = ensureUser(user);
    chownTree(token.dir, uid, uid);
    const { stdout } = await run(
      'setpriv',
      [
        `--reuid=${user}`,
        `--regid=${user}`,
        '--init-groups',
        '--',
        process.execPath,
        '--require',
        require.resolve('tsx/cjs'),
        join(__dirname, 'pkcs11-unreadable-child.ts'),
      ],
      {
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: '/nonexistent',
          KW_TOKEN_DIR: token.dir,
          KW_MODULE: token.modulePath,
          KW_TOKEN_LABEL: token.tokenLabel,
          KW_PIN: token.pin,
          KW_AWAY_MS: '5000',
        },
        timeout: 90_000,
      },
    );
    const r = JSON.parse(stdout) as ChildReport;
    assert.notEqual(r.uid, 0, 'the backend ran as root: the mode would not have mattered');
    assert.ok(r.whileAway.length >= 5, JSON.stringify(r));
    assert.deepEqual([...new Set(r.whileAway)], ['BACKEND_UNAVAILABLE'], JSON.stringify(r));
    assert.equal(r.healthAway?.ok, false);
    assert.ok(r.signedAfterMs !== null, `no signature within 15 s of the return: ${r.lastError}`);
    assert.ok(r.signedAfterMs <= 10_000, `signed again ${r.signedAfterMs} ms after the return`);
    assert.equal(r.exists, true);
    assert.equal(r.healthBack.ok, true);
  });
});
