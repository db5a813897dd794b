/** Environment variable carrying a worker's slot number (1..N) from the primary. */
export const WORKER_SLOT_ENV = 'KEYWARDEN_WORKER_SLOT';

/** Response header naming the worker slot that answered (with `server.workerHeader` only). */
export const WORKER_HEADER = 'x-keywarden-worker';

/**
 * This process's worker slot, or null outside a worker. A slot is stable across restarts: the
 * worker that replaces a crashed worker 2 is worker 2 again, so logs and dashboards line up.
 */
export function workerSlot(env: NodeJS.ProcessEnv = process.env): number | null {
  const raw = env[WORKER_SLOT_ENV];
  if (raw === undefined || !/^\d{1,3}$/.test(raw)) return null;
  return Number(raw);
}

/**
 * The constant headers a worker in `slot` adds to every response (createServer's
 * `responseHeaders`): `x-keywarden-worker` with `server.workerHeader`, so operators (and tests)
 * can see that every worker serves and which one answered a given request; none by default. The
 * slot is a small number, not a pid, but it still tells any client how the daemon is laid out,
 * and it is one more header on every answer of the hottest route (JWKS).
 */
export function workerResponseHeaders(
  server: { workerHeader: boolean },
  slot: number,
): Record<string, string> {
  return server.workerHeader ? { [WORKER_HEADER]: String(slot) } : {};
}
