import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { stringify } from 'yaml';
import { runKeywarden } from '../helpers/cli';
import { testConfigDocument } from '../helpers/runtime';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, as in CI here). */
function canMount(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'kw-robust-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * #18 item 6: `keys rotate` and `keys revoke` on a SQLite store that is read-only, or on a full
 * disk, ended with an internal error (exit 70). They are store problems: STORE_ERROR, exit 7, and
 * nothing changes (no key row, no HSM object, no revocation). The store lives on a small tmpfs the
 * test mounts, remounts read-only, and fills.
 */
describe('CLI: a read-only or full store is STORE_ERROR (exit 7), never an internal error', function () {
  this.timeout(180_000);
  let token: SoftHsmToken;
  let mnt: string;
  /** The same file system, mounted read-only at a second path (a bind mount). */
  let roView: string;
  let cfg: string;
  let roCfg: string;
  /** A connection held open all along, as a running daemon holds it (its WAL and -shm files exist). */
  let daemonLike: Database.Database;
  let kid: string;
  // --local: these are direct store access under fault; no daemon runs.
  const kw = (...args: string[]) => runKeywarden(['-c', cfg, '--local', ...args]);
  const hsmObjects = () =>
    execFileSync(
      'pkcs11-tool',
      ['--module', token.modulePath, '--token-label', token.tokenLabel, '--login', '--pin', token.pin, '-O'],
      { env: { ...process.env, ...token.env }, encoding: 'utf8' },
    )
      .split('\n')
      .filter((l) => /Object;/.test(l)).length;

  before(async function () {
    if (!canMount()) this.skip(); // needs root with CAP_SYS_ADMIN: says so instead of passing
    token = await createSoftHsmToken();
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    mnt = mkdtempSync(join(tmpdir(), 'kw-robust-store-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    cfg = join(token.dir, 'faults.yaml');
    await writeFile(
      cfg,
      stringify(
        testConfigDocument(token, [{ name: 'demo' }], { store: { url: `sqlite:${mnt}/keywarden.db` } }),
      ),
    );
    const init = await kw('init');
    assert.equal(init.code, 0, init.stderr);
    kid = JSON.parse((await kw('--json', 'keys', 'list')).stdout)[0].kid;
    daemonLike = new Database(join(mnt, 'keywarden.db'));
    daemonLike.pragma('journal_mode = WAL');
    daemonLike.prepare('SELECT count(*) FROM keys').get();
    roView = mkdtempSync(join(tmpdir(), 'kw-robust-ro-'));
    execFileSync('mount', ['--bind', mnt, roView]);
    execFileSync('mount', ['-o', 'remount,bind,ro', roView]);
    roCfg = join(token.dir, 'faults-ro.yaml');
    await writeFile(
      roCfg,
      stringify(
        testConfigDocument(token, [{ name: 'demo' }], { store: { url: `sqlite:${roView}/keywarden.db` } }),
      ),
    );
  });
  after(async () => {
    daemonLike?.close();
    if (roView) {
      execFileSync('umount', [roView], { stdio: 'ignore' });
      rmSync(roView, { recursive: true, force: true });
    }
    if (mnt) {
      execFileSync('umount', [mnt], { stdio: 'ignore' });
      rmSync(mnt, { recursive: true, force: true });
    }
    await token?.cleanup();
  });

  const expectStoreError = async (args: string[], config = cfg) => {
    const r = await runKeywarden(['-c', config, '--local', ...args]);
    assert.equal(r.code, 7, `${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /STORE_ERROR/);
    assert.doesNotMatch(r.stderr, /internal error/);
  };
  const unchanged = async (objectsBefore: number) => {
    const rows = JSON.parse((await kw('--json', 'keys', 'list')).stdout) as {
      kid: string;
      revokedAt: null;
    }[];
    assert.deepEqual(
      rows.map((r) => [r.kid, r.revokedAt]),
      [[kid, null]],
    );
    assert.equal(hsmObjects(), objectsBefore);
  };

  it('read-only: keys rotate and keys revoke exit 7, and nothing changes', async () => {
    const objects = hsmObjects();
    await expectStoreError(['keys', 'rotate', '--scope', 'demo'], roCfg);
    await expectStoreError(['keys', 'revoke', '--reason', 'test', '--', kid], roCfg);
    await unchanged(objects);
  });

  it('disk full: keys rotate and keys revoke exit 7, and nothing changes', async () => {
    const objects = hsmObjects();
    const filler = join(mnt, 'filler');
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'ignore' });
    } catch {
      // dd stops with ENOSPC: the disk is full, as wanted.
    }
    try {
      await expectStoreError(['keys', 'rotate', '--scope', 'demo']);
      await expectStoreError(['keys', 'revoke', '--reason', 'test', '--', kid]);
    } finally {
      rmSync(filler, { force: true });
    }
    await unchanged(objects);
  });
});
