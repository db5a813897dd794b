import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

export interface SqliteFileWatcherOptions {
  /** The database file (its `-wal` and `-journal` neighbours are watched with it). */
  file: string;
  /** Called at most once per `settleMs` while the files change. */
  onMaybeChange: () => void;
  log: Logger;
  settleMs?: number;
}

/**
 * SQLite has no NOTIFY: another process's write (the CLI's `keys revoke`, another daemon on the
 * host) shows only as a change of the database's files. Watching them (inotify) lets a daemon
 * compare its key set version within milliseconds of any write instead of at the next poll, so
 * a revocation reaches its key-events streams at once. Writes that are not to `keys` cost one
 * version read. The key cache's polling stays the bound when watching fails (some network file
 * systems deliver no events). Never throws after `start()`.
 */
export class SqliteFileWatcher {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: SqliteFileWatcherOptions) {}

  start(): void {
    if (this.watcher) return;
    const name = basename(this.opts.file);
    try {
      // The directory, not the file: the -wal file is created and removed as SQLite checkpoints.
      this.watcher = watch(dirname(this.opts.file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed.startsWith(name)) this.schedule();
      });
      this.watcher.on('error', (e) => {
        this.opts.log.warn({ err: e.message }, 'store file watch failed; key changes arrive by polling');
        this.stop();
      });
    } catch (e) {
      this.opts.log.warn(
        { err: (e as Error).message },
        'cannot watch the store files; key changes arrive by polling',
      );
    }
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.opts.onMaybeChange();
    }, this.opts.settleMs ?? 10);
    this.timer.unref();
  }
}
