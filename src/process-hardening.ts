import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';

/**
 * Disables core dumps of this process (I3: a crash dump must never carry key material; the
 * 2023 key leaked through one). Node has no setrlimit, so this uses util-linux `prlimit` on
 * our own pid. Where that is unavailable the daemon still runs, and says so; the Dockerfile
 * (`ulimit -c 0`) and the systemd unit (`LimitCORE=0`) set it from outside as well.
 */
export function disableCoreDumps(log: Logger): boolean {
  if (process.platform !== 'linux') {
    log.warn('core dumps not disabled: only implemented on Linux; set the core limit to 0 outside');
    return false;
  }
  try {
    execFileSync('prlimit', [`--pid=${process.pid}`, '--core=0:0'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch (e) {
    log.warn(
      { err: (e as Error).message },
      'core dumps not disabled: prlimit failed; set LimitCORE=0 / ulimit -c 0',
    );
    return false;
  }
}

/** Reads this process's core-dump limit from /proc (for tests and `hsm status`). */
export function coreDumpLimit(): string | null {
  try {
    const limits = readFileSync(`/proc/${process.pid}/limits`, 'utf8');
    const line = limits.split('\n').find((l) => l.startsWith('Max core file size'));
    return line ? (line.split(/\s{2,}/)[1] ?? null) : null;
  } catch {
    return null;
  }
}
