import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openPkcs11Backend } from '../../src/backends/pkcs11';
import { softHsmModulePath } from '../helpers/softhsm';

const run = promisify(execFile);
const SCRIPT = join(__dirname, '..', '..', 'hsm', 'init-token.sh');

/** Runs the script, optionally as another uid/gid (needs root), and returns its stdout. */
async function initToken(dataDir: string, label?: string, asUid?: number): Promise<string> {
  const args = [SCRIPT, dataDir, ...(label ? [label] : [])];
  const { stdout } =
    asUid === undefined
      ? await run('bash', args)
      : await run('setpriv', [`--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups', 'bash', ...args]);
  return stdout.trim();
}

async function tokenLabels(conf: string): Promise<string[]> {
  const { stdout } = await run('softhsm2-util', ['--show-slots'], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
  });
  return [...stdout.matchAll(/^\s*Label:\s*(.*?)\s*$/gm)].map((m) => m[1] ?? '').filter((l) => l !== '');
}

describe('hsm/init-token.sh', function () {
  this.timeout(60_000);
  let base: string;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'keywarden-init-token-'));
    await chmod(base, 0o755); // lets another uid reach its own data dir below
  });

  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('prepares a token once; a second run changes nothing; the backend opens with its outputs', async () => {
    const dataDir = join(base, 'data');
    const conf = await initToken(dataDir);
    assert.equal(conf, join(dataDir, 'hsm', 'softhsm2.conf'));
    const text = await readFile(conf, 'utf8');
    assert.match(text, new RegExp(`^directories\\.tokendir = ${join(dataDir, 'hsm', 'tokens')}$`, 'm'));
    assert.match(text, /^objectstore\.backend = file$/m);
    assert.match(text, /^log\.level = ERROR$/m);
    const pin = await readFile(join(dataDir, 'hsm', 'user-pin'), 'utf8');
    const soPin = await readFile(join(dataDir, 'hsm', 'so-pin'), 'utf8');
    assert.ok(pin.length >= 16 && pin !== soPin);
    for (const f of ['user-pin', 'so-pin', 'softhsm2.conf']) {
      assert.equal((await stat(join(dataDir, 'hsm', f))).mode & 0o777, 0o600, `${f} mode`);
    }
    assert.deepEqual(await tokenLabels(conf), ['keywarden']);

    assert.equal(await initToken(dataDir), conf);
    assert.equal(await readFile(join(dataDir, 'hsm', 'user-pin'), 'utf8'), pin, 'PIN kept');
    assert.deepEqual(await tokenLabels(conf), ['keywarden'], 'no second token');

    await initToken(dataDir, 'second');
    assert.deepEqual((await tokenLabels(conf)).sort(), ['keywarden', 'second']);

    const backend = await openPkcs11Backend({
      type: 'pkcs11',
      name: 'hsm',
      module: softHsmModulePath(),
      tokenLabel: 'keywarden',
      pin: { file: join(dataDir, 'hsm', 'user-pin') },
      moduleEnv: { SOFTHSM2_CONF: conf },
      sessions: 1,
      pinValue: pin,
    });
    try {
      assert.equal((await backend.health()).ok, true);
    } finally {
      await backend.close();
    }
  });

  it('refuses a label longer than a PKCS#11 token label', async () => {
    await assert.rejects(initToken(join(base, 'long'), 'x'.repeat(33)), /1\.\.32 characters/);
  });

  // Ownership handling only exists for root; as a non-root user the first test covers the script.
  if (process.getuid?.() === 0) {
    it('as root on a service user’s dir hands the files to that user, who can run it again', async () => {
      const uid = 54_321;
      const dataDir = join(base, 'svc');
      await mkdir(dataDir);
      await chown(dataDir, uid, uid);
      const conf = await initToken(dataDir);
      for (const f of ['', 'tokens', 'user-pin', 'so-pin', 'softhsm2.conf']) {
        const st = await stat(join(dataDir, 'hsm', f));
        assert.deepEqual([st.uid, st.gid], [uid, uid], `${f || 'hsm/'} owner`);
      }
      assert.equal(await initToken(dataDir, undefined, uid), conf, 'the service user re-runs it');
      const fresh = join(base, 'svc2');
      await mkdir(fresh);
      await chown(fresh, uid, uid);
      const conf2 = await initToken(fresh, undefined, uid);
      assert.equal((await stat(join(fresh, 'hsm', 'user-pin'))).uid, uid);
      assert.deepEqual(await tokenLabels(conf2), ['keywarden']);
    });
  }
});
