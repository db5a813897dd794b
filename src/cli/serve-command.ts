import { Command, InvalidArgumentError } from 'commander';
import { parseWorkerCount, serve } from '../daemon';
import { globals, loadConfigFor } from './io';

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
 * `keywarden serve`: the daemon (scheduler + HTTP), until SIGTERM/SIGINT.
 *
 * With `--workers N` (default: one per CPU) the process is a node:cluster primary: it runs the
 * scheduler (the only process that does) and N worker processes serve HTTP on the shared port,
 * each with its own PKCS#11 sessions, store connection and key cache (SoftHSM and pkcs11js
 * scale across processes, not threads). `--workers 1` is a single process doing both.
 */
export function serveCommand(): Command {
  return new Command('serve')
    .description('run the daemon: scheduled reconcile per scope, JWKS/discovery/health over HTTP')
    .option('--host <host>', 'listen address (overrides server.host)')
    .option('--port <port>', 'listen port (overrides server.port)', port)
    .option(
      '--workers <n>',
      'HTTP worker processes sharing the port (default: one per CPU; 1 = a single process)',
      parseWorkerCount,
    )
    .action(async (opts: ServeOptions, cmd: Command) => {
      const config = loadConfigFor(cmd);
      return serve(config, { ...opts, logLevel: globals(cmd).logLevel ?? config.logLevel });
    });
}
