import { closeSync, fchmodSync, fchownSync, fstatSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { KeywardenError } from '../../policy/errors';

/** How long a process waits for another to finish its object-store work before it gives up. */
const DEFAULT_WAIT_MS = 60_000;
/** Polling bounds while another process holds the lock (the event loop stays free meanwhile). */
const FIRST_RETRY_MS = 2;
const MAX_RETRY_MS = 50;

/**
 * A lock that every keywarden process on this host takes, through one file, before it creates,
 * destroys or lists a token's objects. SoftHSM2 2.6.1 can crash a process that reads objects'
 * attributes while another process destroys objects on the same token (docs/hsm-vendors.md): the
 * in-process queue (Cryptoki.oneAtATime) cannot see the other process, this can.
 *
 * It is an SQLite database held in an exclusive transaction, because SQLite's file locks are
 * what Node can take without a native addon of its own: the kernel drops them when the holder
 * dies (kill -9 included), so a crashed holder never leaves the token locked, unlike a lock
 * directory or a pid file. Nothing is ever written to it.
 */
export class ObjectStoreLock {
  private readonly db: Database.Database;
  /** In-process queue: one connection holds one transaction at a time. */
  private tail: Promise<unknown> = Promise.resolve();
  private users = 1;

  private constructor(
    readonly path: string,
    private readonly waitMs: number,
  ) {
    prepareLockFile(path);
    try {
      // timeout 0: a busy lock answers at once, and the retry below waits without blocking.
      this.db = new Database(path, { timeout: 0 });
    } catch (e) {
      throw new KeywardenError(
        'BACKEND_ERROR',
        `cannot open the PKCS#11 object lock file ${path}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  /** Per path, one lock (and one connection) per process, shared by every backend using it. */
  static open(path: string, waitMs = DEFAULT_WAIT_MS): ObjectStoreLock {
    const existing = open.get(path);
    if (existing) {
      existing.users += 1;
      return existing;
    }
    const lock = new ObjectStoreLock(path, waitMs);
    open.set(path, lock);
    return lock;
  }

  /** Runs `task` while this process holds the lock; other processes wait for it to settle. */
  around<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(async () => {
      await this.acquire();
      try {
        return await task();
      } finally {
        this.db.exec('ROLLBACK');
      }
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  release(): void {
    this.users -= 1;
    if (this.users > 0) return;
    open.delete(this.path);
    this.db.close();
  }

  private async acquire(): Promise<void> {
    const deadline = Date.now() + this.waitMs;
    for (let retryMs = FIRST_RETRY_MS; ; retryMs = Math.min(retryMs * 2, MAX_RETRY_MS)) {
      try {
        this.db.exec('BEGIN EXCLUSIVE');
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== 'SQLITE_BUSY') {
          throw new KeywardenError(
            'BACKEND_ERROR',
            `cannot take the PKCS#11 object lock ${this.path}: ${(e as Error).message}`,
            { cause: e },
          );
        }
      }
      if (Date.now() >= deadline) {
        throw new KeywardenError(
          'BACKEND_UNAVAILABLE',
          `another process has held the PKCS#11 object lock ${this.path} for over ` +
            `${Math.round(this.waitMs / 1000)} s (a key generation that hangs in the module?)`,
        );
      }
      // Jitter, so that waiting processes do not retry in step.
      await new Promise((r) => setTimeout(r, retryMs / 2 + Math.random() * retryMs));
    }
  }
}

const open = new Map<string, ObjectStoreLock>();

/**
 * Creates the file 0660 if it is missing. Root creating it (a `--local` command) gives it to the
 * directory's owner, so the daemon's own user can still lock it afterwards.
 */
function prepareLockFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'a', 0o660);
  } catch (e) {
    throw new KeywardenError(
      'BACKEND_ERROR',
      `cannot open the PKCS#11 object lock file ${path} (objectLockFile): ${(e as Error).message}`,
      { cause: e },
    );
  }
  try {
    if (process.getuid?.() === 0) {
      // The file just opened, not the path again: nothing can swap it in between.
      const st = fstatSync(fd);
      const dir = statSync(dirname(path));
      if (st.uid !== dir.uid || st.gid !== dir.gid) {
        fchownSync(fd, dir.uid, dir.gid);
        fchmodSync(fd, 0o660);
      }
    }
  } finally {
    closeSync(fd);
  }
}
