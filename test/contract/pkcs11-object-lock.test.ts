/**
 * The object lock across processes (src/backends/pkcs11/object-store-lock.ts). SoftHSM2 2.6.1
 * segfaults a process that reads objects while another process destroys objects on the same
 * token, and hands out a half-made public key ("EC key on an unsupported curve") to a process
 * generating meanwhile; both were seen here within 20 s of pkcs11-object-churn.ts without the
 * lock. With it, two real processes churn one token and both end well; a holder that dies frees
 * the lock at once; a holder that hangs gets a typed error, not a hang.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chown, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openPkcs11Backend, type Pkcs11Backend } from '../../src/backends/pkcs11';
import type { Pkcs11BackendConfig } from '../../src/backends/pkcs11/config';
import { ObjectStoreLock } from '../../src/backends/pkcs11/object-store-lock';
import { hasCode } from '../../src/policy/errors';
import { ensureUser } from '../helpers/os-users';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { pkcs11Config } from './pkcs11-fixture';

const TSX = ['--require', require.resolve('tsx/cjs')];
const LOCK_MODULE = join(__dirname, '..', '..', 'src', 'backends', 'pkcs11', 'object-store-lock.ts');

function runChurn(
  role: 'writer' | 'reader',
  seconds: number,
  config: Pkcs11BackendConfig & { pinValue: string },
): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  const child = spawn(
    process.execPath,
    [...TSX, join(__dirname, 'pkcs11-object-churn.ts'), role, String(seconds), JSON.stringify(config)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, out })));
}

/** A process that takes the lock at `path` and holds it until killed; resolves once it holds it. */
async function holdLock(path: string): Promise<ChildProcess> {
  const code =
    `const { ObjectStoreLock } = require(${JSON.stringify(LOCK_MODULE)});` +
    `ObjectStoreLock.open(${JSON.stringify(path)}).around(() => { process.stdout.write('held'); return new Promise(() => setInterval(() => {}, 60000)); });`;
  const child = spawn(process.execPath, [...TSX, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [first] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(first.toString(), 'held');
  return child;
}

const settledWithin = async (p: Promise<unknown>, ms: number) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('PKCS#11 object lock: one token, several processes', function () {
  this.timeout(120_000);
  let token: SoftHsmToken;
  let backend: Pkcs11Backend | undefined;

  beforeEach(async () => {
    token = await createSoftHsmToken();
  });

  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    await token.cleanup();
  });

  it('a process creating and destroying keys and one listing and reading them both end well', async () => {
    const config = pkcs11Config(token, {
      sessions: 2,
      objectLock: { file: join(token.dir, 'objects.lock'), required: true },
    });
    const [writer, reader] = await Promise.all([
      runChurn('writer', 8, config),
      runChurn('reader', 8, config),
    ]);
    for (const r of [writer, reader]) {
      assert.equal(r.signal, null, `killed by ${String(r.signal)}: ${r.out}`);
      assert.equal(r.code, 0, r.out);
    }
    assert.ok((JSON.parse(writer.out) as { rounds: number }).rounds > 0, writer.out);
    assert.ok((JSON.parse(reader.out) as { rounds: number }).rounds > 0, reader.out);
  });

  it('waits while another process holds the lock, and goes on the moment that process dies', async () => {
    const lockFile = join(token.dir, 'objects.lock');
    const holder = await holdLock(lockFile);
    try {
      backend = await openPkcs11Backend(
        pkcs11Config(token, { objectLock: { file: lockFile, required: true } }),
      );
      const listing = backend.inventory();
      assert.equal(
        await settledWithin(listing, 500),
        false,
        'listed the token while another process held the lock',
      );
      holder.kill('SIGKILL');
      assert.equal(await settledWithin(listing, 2_000), true, 'the dead holder still blocked the token');
      assert.deepEqual(await listing, []);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a holder that never lets go gets BACKEND_UNAVAILABLE after the wait, naming the file', async () => {
    const lockFile = join(token.dir, 'hung.lock');
    const holder = await holdLock(lockFile);
    const lock = ObjectStoreLock.open(lockFile, 300);
    try {
      let ran = false;
      const err = await lock
        .around(async () => (ran = true))
        .then(
          () => assert.fail('took a held lock'),
          (e: unknown) => e as Error,
        );
      assert.ok(hasCode(err, 'BACKEND_UNAVAILABLE'), String(err));
      assert.match(err.message, /hung\.lock/);
      assert.equal(ran, false);
      holder.kill('SIGKILL');
      await once(holder, 'exit');
      assert.equal(await lock.around(async () => 'after'), 'after');
    } finally {
      holder.kill('SIGKILL');
      lock.release();
    }
  });

  it('root creating the lock file gives it to the directory owner (mode 0660), so the daemon can lock it', async () => {
    const dir = join(token.dir, 'daemon-data');
    await mkdir(dir);
    const uid = process.getuid?.() === 0 ? ensureUser('kw-test-lockowner') : process.getuid!();
    const gid =
      process.getuid?.() === 0
        ? Number(execFileSync('id', ['-g', 'kw-test-lockowner']).toString())
        : process.getgid!();
    await chown(dir, uid, gid);
    const file = join(dir, 'hsm.pkcs11.lock');
    ObjectStoreLock.open(file).release();
    const st = await stat(file);
    assert.deepEqual([st.uid, st.gid], [uid, gid]);
    if (process.getuid?.() === 0) assert.equal(st.mode & 0o777, 0o660);
  });

  it('a lock file that cannot be opened stops the backend from opening, with BACKEND_ERROR', async () => {
    const lockFile = join(token.dir, 'no-such-dir', 'objects.lock');
    const err = await openPkcs11Backend(
      pkcs11Config(token, { objectLock: { file: lockFile, required: true } }),
    ).then(
      () => assert.fail('opened'),
      (e: unknown) => e as Error,
    );
    assert.ok(hasCode(err, 'BACKEND_ERROR'), String(err));
    assert.match(err.message, /no-such-dir\/objects\.lock/);
  });

  it('the default lock file that cannot be opened: the backend opens, with a warning naming it', async () => {
    const lockFile = join(token.dir, 'no-such-dir', 'default.lock');
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      backend = await openPkcs11Backend(
        pkcs11Config(token, { objectLock: { file: lockFile, required: false } }),
      );
      assert.deepEqual(await backend.inventory(), []);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    const warning = warnings.find((w) => (w as { code?: string }).code === 'KEYWARDEN_PKCS11_OBJECT_LOCK');
    assert.ok(warning, 'no warning');
    assert.match(warning.message, /default\.lock/);
  });
});
