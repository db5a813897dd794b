import cluster from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import { Command, InvalidArgumentError } from 'commander';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { createStoreAuditSink } from '../audit';
import {
  defaultWorkerCount,
  maxBackendConcurrency,
  parseWorkerCount,
  threadPoolSizeFor,
  workerResponseHeaders,
  workerSlot,
  WorkerSupervisor,
} from '../cluster';
import { primaryMetricsRegistry, serveClusterMetrics } from '../cluster/cluster-metrics';
import { LifecycleMetrics } from '../http/lifecycle-metrics';
import { publicBaseUrl } from '../http/public-url';
import { createServer } from '../http/server';
import { tokenServicePlugins } from '../http/sign-verify-routes';
import type { LifecycleContext } from '../lifecycle/context';
import { createLogger } from '../log';
import { openRuntime, type Runtime } from '../main';
import type { KeywardenConfig } from '../policy/scope';
import { disableCoreDumps } from '../process-hardening';
import { Scheduler } from '../scheduler/scheduler';
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

interface Listen {
  host: string;
  port: number;
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
      const level = globals(cmd).logLevel ?? config.logLevel;
      const slot = cluster.isWorker ? workerSlot() : null;
      const log = slot === null ? createLogger(level, 1) : createLogger(level, 1).child({ worker: slot });
      // I3: no core dump of any keywarden process (workers inherit the limit; set it anyway).
      disableCoreDumps(log);
      // A request must never take the daemon down; anything that escapes is logged.
      process.on('unhandledRejection', (e) =>
        log.error({ err: (e as Error)?.message }, 'unhandled rejection'),
      );
      const listen = { host: opts.host ?? config.server.host, port: opts.port ?? config.server.port };
      if (cluster.isWorker) return serveWorker(config, log, listen, slot ?? cluster.worker?.id ?? 0);
      const advertised = publicBaseUrl(config.server.publicUrl, listen);
      if (advertised.warning) log.warn(advertised.warning);
      const workers = opts.workers ?? defaultWorkerCount();
      if (workers === 1) return serveSingle(config, log, listen);
      return servePrimary(config, log, listen, workers);
    });
}

/** `scheduling`: the one process that also records integrity findings in the audit log. */
function openDaemonRuntime(config: KeywardenConfig, log: Logger, scheduling: boolean): Promise<Runtime> {
  return openRuntime(config, { log, audit: createStoreAuditSink(config), auditIntegrity: scheduling });
}

/**
 * What the one scheduling process runs (the single process, or the cluster primary): the
 * runtime, the scheduler with its start-up reconcile, the lifecycle metrics it feeds, and the
 * key cache those gauges read (kept current with changes other processes make).
 */
async function startScheduling(
  config: KeywardenConfig,
  log: Logger,
): Promise<{ rt: Runtime; scheduler: Scheduler; lifecycle: LifecycleMetrics }> {
  const rt = await openDaemonRuntime(config, log, true);
  const lifecycle = new LifecycleMetrics(rt.ctx);
  const scheduler = new Scheduler(rt.ctx, lifecycle.schedulerHooks());
  await scheduler.start();
  rt.ctx.cache.start();
  return { rt, scheduler, lifecycle };
}

/**
 * Builds the HTTP server (JWKS, discovery, health, token service) and listens. `metricsRegistries`
 * are served on `/metrics` next to the token service's (the key lifecycle's, in a single process).
 */
async function startHttp(
  ctx: LifecycleContext,
  config: KeywardenConfig,
  listen: Listen,
  opts: { responseHeaders?: Record<string, string>; metricsRegistries?: readonly Registry[] } = {},
): Promise<{ app: FastifyInstance; address: string }> {
  const app = createServer(ctx, {
    publicBaseUrl: publicBaseUrl(config.server.publicUrl, listen).url,
    plugins: tokenServicePlugins(ctx, { metricsRegistries: opts.metricsRegistries ?? [] }),
    responseHeaders: opts.responseHeaders,
  });
  const address = await app.listen(listen);
  return { app, address };
}

/** Runs `stop` once on the first SIGTERM/SIGINT, then exits with its code. */
function onShutdownSignal(log: Logger, stop: () => Promise<number>): Promise<never> {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: draining requests');
    stop().then(
      (code) => process.exit(code),
      (e: Error) => {
        log.error({ err: e.message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
  // Serve until a signal ends the process.
  return new Promise<never>(() => undefined);
}

/** `--workers 1`: scheduler and HTTP in this one process. */
async function serveSingle(config: KeywardenConfig, log: Logger, listen: Listen): Promise<never> {
  // libuv sized its pool when this process started (bin/keywarden sets the variable first);
  // too small a pool makes PKCS#11 signatures queue behind each other.
  const sessions = maxBackendConcurrency(config);
  if (Number(process.env.UV_THREADPOOL_SIZE ?? 4) < sessions) {
    log.warn(
      { UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)', sessions },
      'UV_THREADPOOL_SIZE is smaller than the PKCS#11 sessions: signatures queue; set it before start',
    );
  }
  const { rt, scheduler, lifecycle } = await startScheduling(config, log);
  const { app, address } = await startHttp(rt.ctx, config, listen, {
    metricsRegistries: [lifecycle.registry],
  });
  log.info({ address, scopes: config.scopes.map((s) => s.name) }, 'keywarden serving');
  return onShutdownSignal(log, async () => {
    await app.close();
    await scheduler.stop();
    await rt.close();
    return 0;
  });
}

/** A cluster worker: HTTP only, with its own runtime; the primary runs the scheduler. */
async function serveWorker(
  config: KeywardenConfig,
  log: Logger,
  listen: Listen,
  slot: number,
): Promise<never> {
  const rt = await openDaemonRuntime(config, log, false);
  // Each worker polls the store itself: revocations and new keys reach it as they reach a
  // separate daemon, within server.keyRefreshSeconds.
  rt.ctx.cache.start();
  const { app, address } = await startHttp(rt.ctx, config, listen, {
    responseHeaders: workerResponseHeaders(config.server, slot),
  });
  log.debug({ address }, 'worker serving');
  return onShutdownSignal(log, async () => {
    // fastify's close stops accepting, lets in-flight requests finish, then resolves.
    await app.close();
    await rt.close();
    return 0;
  });
}

/**
 * The cluster primary: opens the store first (so migrations run once, before any worker),
 * runs the scheduler (start-up reconcile included, so workers find every scope's keys), then
 * forks the workers and supervises them. SIGTERM drains every worker and exits 0.
 */
async function servePrimary(
  config: KeywardenConfig,
  log: Logger,
  listen: Listen,
  workers: number,
): Promise<never> {
  const { rt, scheduler, lifecycle } = await startScheduling(config, log);
  const threadPool = threadPoolSizeFor(config);
  const supervisor = new WorkerSupervisor({
    workers,
    log,
    env: { UV_THREADPOOL_SIZE: String(threadPool) },
  });
  // /metrics answered by any worker reports the sum over all of them, plus the primary's own
  // metrics: the key lifecycle (the scheduler runs here) and its process metrics. Listening
  // before the workers start, so not even their first scrape goes unanswered.
  serveClusterMetrics(primaryMetricsRegistry([lifecycle.registry]), log);
  supervisor.start();
  log.info(
    {
      address: `http://${listen.host}:${listen.port}`,
      workers,
      threadPoolPerWorker: threadPool,
      scopes: config.scopes.map((s) => s.name),
    },
    'keywarden serving',
  );
  return onShutdownSignal(log, async () => {
    const drained = await supervisor.stop();
    await scheduler.stop();
    await rt.close();
    return drained ? 0 : 1;
  });
}
