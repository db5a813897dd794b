import cluster from 'node:cluster';
import { Command, InvalidArgumentError } from 'commander';
import { defaultConfigPath, loadConfigFile } from '../config/load-config';
import { globals } from './io';

/**
 * The daemon's modules (fastify, prom-client, the scheduler) load for `serve` only, not at every
 * other command's start.
 */
function daemon(): typeof import('../daemon') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('../daemon') as typeof import('../daemon');
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

interface ServeOptions {
  host?: string;
  port?: number;
  workers?: number;
}

/**
 * `keywarden serve`: the daemon (scheduler + HTTP), until SIGTERM/SIGINT; SIGHUP reloads the
 * config (docs/operations.md "Reload").
 *
 * With `--workers N` (default: one per CPU) the process is a node:cluster primary: it runs the
 * scheduler (the only process that does) and N worker processes serve HTTP on the shared port,
 * each with its own PKCS#11 sessions, store connection and key cache (SoftHSM and pkcs11js
 * scale across processes, not threads). `--workers 1` is a single process doing both.
 */
export function serveCommand(): Command {
  return new Command('serve')
    .description(
      'run the daemon: scheduled reconcile per scope, JWKS/discovery/health over HTTP; ' +
        'SIGHUP reloads the config, SIGTERM drains and exits 0; exits 8 when it cannot listen',
    )
    .option('--host <host>', 'listen address (overrides server.host)')
    .option('--port <port>', 'listen port (overrides server.port)', port)
    .option(
      '--workers <n>',
      'HTTP worker processes sharing the port (default: one per CPU; 1 = a single process)',
      (v: string) => daemon().parseWorkerCount(v),
    )
    .action(async (opts: ServeOptions, cmd: Command) => {
      const logLevel = globals(cmd).logLevel;
      const req = { ...opts, ...(logLevel !== undefined ? { logLevel } : {}) };
      const { serve, serveAsWorker } = daemon();
      // A cluster worker runs the config its primary runs (which it asks for), not the file as it is now.
      if (cluster.isWorker) return serveAsWorker(req);
      return serve(loadConfigFile(globals(cmd).config ?? defaultConfigPath()), req);
    });
}
