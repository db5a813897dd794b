/**
 * /readyz means "can do its job now" (issue #18 item 7): a daemon whose SQLite store sits on a
 * file system that fills up answers reads but cannot commit the next key row or audit record, so
 * it is not ready (`store-write`) until there is room again. A real full file system: a small
 * tmpfs the test mounts (as root; skipped where mounting is not allowed).
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { open, mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { until } from '../helpers/wait';

const run = promisify(execFile);

/** Writes zeros into `path` until the file system says it is full. */
async function fillUp(dir: string, path: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const chunk = Buffer.alloc(256 * 1024);
    for (;;) {
      const s = await statfs(dir);
      if (s.bavail === 0) return;
      try {
        await fh.write(chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOSPC') return;
        throw e;
      }
    }
  } finally {
    await fh.close();
  }
}

describe('readiness while the store cannot be written (e2e, full file system)', function () {
  this.timeout(180_000);
  let mnt: string;
  let mounted = false;
  let daemon: Daemon | undefined;

  before(async function () {
    mnt = await mkdtemp(join(tmpdir(), 'keywarden-store-full-'));
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', mnt]);
      mounted = true;
    } catch {
      await rm(mnt, { recursive: true, force: true });
      // Mounting needs root (CAP_SYS_ADMIN); the unit test covers the readiness rule on fakes.
      this.skip();
    }
    daemon = await startDaemon({
      scopes: [{ name: 'demo' }],
      storeUrl: `sqlite:${join(mnt, 'keywarden.db')}`,
    });
  });

  after(async () => {
    await daemon?.stop();
    if (mounted) await run('umount', [mnt]).catch(() => undefined);
    await rm(mnt, { recursive: true, force: true });
  });

  it('is ready, then not ready (store-write) while the disk is full, and ready again once there is room', async () => {
    const d = daemon as Daemon;
    const readyz = async () => {
      const res = await fetch(`${d.baseUrl}/readyz`);
      return {
        status: res.status,
        body: (await res.json()) as { checks: Record<string, { ok: boolean; detail: string }> },
      };
    };
    assert.equal((await readyz()).status, 200);
    const filler = join(mnt, 'filler');
    await fillUp(mnt, filler);
    const full = await readyz();
    assert.equal(full.status, 503, JSON.stringify(full.body));
    assert.equal(full.body.checks.store?.ok, true, 'reads still work');
    assert.equal(full.body.checks['store-write']?.ok, false);
    assert.match(full.body.checks['store-write']?.detail ?? '', /bytes free|cannot be written/);
    // JWKS and signing do not need the disk: the daemon keeps serving what it can.
    assert.equal((await fetch(d.jwksUrl('demo'))).status, 200);

    await rm(filler);
    await until(
      '/readyz 200 once there is room',
      async () => ((await readyz()).status === 200 ? true : undefined),
      {
        context: () => d.output(),
      },
    );
  });
});
