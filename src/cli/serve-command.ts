import { Command, InvalidArgumentError } from 'commander';
import { createStoreAuditSink } from '../audit';
import { createServer } from '../http/server';
import { tokenServicePlugins } from '../http/sign-verify-routes';
import { createLogger } from '../log';
import { openRuntime } from '../main';
import { disableCoreDumps } from '../process-hardening';
import { Scheduler } from '../scheduler/scheduler';
import { globals, loadConfigFor } from './io';

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number');
  return n;
}

/** `keywarden serve`: the daemon (scheduler + HTTP), until SIGTERM/SIGINT. */
export function serveCommand(): Command {
  return new Command('serve')
    .description('run the daemon: scheduled reconcile per scope, JWKS/discovery/health over HTTP')
    .option('--host <host>', 'listen address (overrides server.host)')
    .option('--port <port>', 'listen port (overrides server.port)', port)
    .action(async (opts: { host?: string; port?: number }, cmd: Command) => {
      const config = loadConfigFor(cmd);
      const log = createLogger(globals(cmd).logLevel ?? config.logLevel, 1);
      disableCoreDumps(log);
      // A request must never take the daemon down; anything that escapes is logged.
      process.on('unhandledRejection', (e) =>
        log.error({ err: (e as Error)?.message }, 'unhandled rejection'),
      );
      const rt = await openRuntime(config, { log, audit: createStoreAuditSink(config) });
      const { ctx } = rt;
      const host = opts.host ?? config.server.host;
      const listenPort = opts.port ?? config.server.port;
      const scheduler = new Scheduler(ctx);
      await scheduler.start();
      ctx.cache.start();
      const app = createServer(ctx, {
        publicBaseUrl: config.server.publicUrl ?? `http://${host}:${listenPort}`,
        plugins: tokenServicePlugins(ctx),
      });
      const address = await app.listen({ host, port: listenPort });
      log.info({ address, scopes: config.scopes.map((s) => s.name) }, 'keywarden serving');
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down: draining requests');
        await app.close();
        await scheduler.stop();
        await rt.close();
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop('SIGTERM'));
      process.on('SIGINT', () => void stop('SIGINT'));
      // Serve until a signal ends the process.
      await new Promise<never>(() => undefined);
    });
}
