import type { FastifyInstance } from 'fastify';

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
 * A createServer plugin that names the answering worker in every response, so operators (and
 * tests) can see that every worker serves and which one answered a given request. The slot is
 * a small number, not a pid, but it still tells any client how the daemon is laid out, and it
 * costs a hook and a header on every response of the hottest route (JWKS): so it is opt-in
 * (`server.workerHeader`), and workerPlugins leaves it out by default.
 */
export function workerIdentityPlugin(slot: number): (app: FastifyInstance) => void {
  const value = String(slot);
  return (app) => {
    app.addHook('onRequest', (_req, reply, done) => {
      reply.header(WORKER_HEADER, value);
      done();
    });
  };
}

/** The createServer plugins a worker in `slot` runs with, given the server configuration. */
export function workerPlugins(
  server: { workerHeader: boolean },
  slot: number,
): ((app: FastifyInstance) => void)[] {
  return server.workerHeader ? [workerIdentityPlugin(slot)] : [];
}
