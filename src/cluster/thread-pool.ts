import { backendType } from '../backends/registry';
import type { KeywardenConfig } from '../policy/scope';

/** libuv's own default thread-pool size. */
const LIBUV_DEFAULT = 4;
/**
 * Threads beyond the PKCS#11 sessions: every session may hold a thread in C_SignAsync, and the
 * verify route (node:crypto verify), client-secret checks (scrypt) and file I/O need threads too.
 */
const HEADROOM = 2;
/** libuv's ceiling. */
const LIBUV_MAX = 1024;

/**
 * The UV_THREADPOOL_SIZE a serving process needs: at least the largest PKCS#11 session pool
 * plus headroom, never less than what the operator already set. libuv reads the variable
 * once, at the pool's first use, so it must be in a process's environment when it starts.
 */
export function threadPoolSizeFor(
  config: Pick<KeywardenConfig, 'backends'>,
  current: string | undefined = process.env.UV_THREADPOOL_SIZE,
): number {
  const sessions = maxBackendConcurrency(config);
  const set = Number(current);
  const base = Number.isInteger(set) && set > 0 ? set : LIBUV_DEFAULT;
  return Math.min(Math.max(base, sessions + HEADROOM), LIBUV_MAX);
}

/**
 * The most operations any one backend runs at once in a process (a PKCS#11 session pool; 0 for
 * backends that wait on the network instead of a thread).
 */
export function maxBackendConcurrency(config: Pick<KeywardenConfig, 'backends'>): number {
  let sessions = 0;
  for (const b of Object.values(config.backends)) {
    sessions = Math.max(sessions, backendType(b.type).concurrency?.(b) ?? 0);
  }
  return sessions;
}
