import cluster from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  defaultWorkerCount,
  maxBackendConcurrency,
  threadPoolSizeFor,
  workerResponseHeaders,
  workerSlot,
  WorkerSupervisor,
} from './cluster';
import {
  exposeWorkerRegistry,
  primaryMetricsRegistry,
  requestClusterMetrics,
  serveClusterMetrics,
} from './cluster/cluster-metrics';
import { ClientAuthenticator } from './http/auth';
import { LifecycleMetrics } from './http/lifecycle-metrics';
import { TokenServiceMetrics } from './http/metrics';
import type { MetricsSource } from './http/ops-routes';
import { publicBaseUrl } from './http/public-url';
import { routeTable } from './http/routes';
import { KeyEventStreams } from './http/key-events';
import { createServer } from './http/server';
import type { Keywarden } from './lifecycle';
import { createLogger } from './log';
import { openRuntime, storeAuditLog, type Runtime } from './main';
import { disableCoreDumps } from './process-hardening';
import type { KeywardenConfig } from './policy/scope';
import { Scheduler } from './scheduler/scheduler';

export { parseWorkerCount } from './cluster';

/** What `keywarden serve` was asked for on its command line. */
export interface ServeRequest {
  host?: string;
  port?: number;
  workers?: number;
  logLevel: string;
}

/**
 * `keywarden serve`: the daemon (scheduler + HTTP), until SIGTERM/SIGINT.
 *
 * With `--workers N` (default: one per CPU) the process is a node:cluster primary: it runs the
 * scheduler (the only process that does) and N worker processes serve HTTP on the shared port,
 * each with its own PKCS#11 sessions, store connection and key cache (SoftHSM and pkcs11js
 * scale across processes, not threads). `--workers 1` is a single process doing both.
 */
export function serve(config: KeywardenConfig, req: ServeRequest): Promise<never> {
  const slot = cluster.isWorker ? workerSlot() : null;
  const log =
    slot === null ? createLogger(req.logLevel, 1) : createLogger(req.logLevel, 1).child({ worker: slot });
  // I3: no core dump of any keywarden process (workers inherit the limit; set it anyway).
  disableCoreDumps(log);
  // A request must never take the daemon down; anything that escapes is logged.
  process.on('unhandledRejection', (e) => log.error({ err: (e as Error)?.message }, 'unhandled rejection'));
  const listen = { host: req.host ?? config.server.host, port: req.port ?? config.server.port };
  if (cluster.isWorker) return serveWorker(config, log, listen, slot ?? cluster.worker?.id ?? 0);
  const advertised = publicBaseUrl(config.server.publicUrl, listen);
  if (advertised.warning) log.warn(advertised.warning);
  const workers = req.workers ?? defaultWorkerCount();
  if (workers === 1) return serveSingle(config, log, listen);
  return servePrimary(config, log, listen, workers);
}

/** Where `serve` listens. */
export interface Listen {
  host: string;
  port: number;
}

export interface HttpServerOptions {
  publicBaseUrl: string;
  /** Registries served on `/metrics` next to the token service's (the key lifecycle's). */
  metricsRegistries?: readonly Registry[];
  /** Constant headers on every answer (a worker's `x-keywarden-worker`). */
  responseHeaders?: Readonly<Record<string, string>>;
}

/**
 * The HTTP server with its collaborators, built here and nowhere else: the token service's
 * client authenticator, metrics and request audit, and `/metrics` (in a worker of `serve
 * --workers N`, the sum over every worker and the primary).
 */
export function createHttpServer(kw: Keywarden, opts: HttpServerOptions): FastifyInstance {
  const tokenService = buildTokenService(kw);
  const extra = opts.metricsRegistries ?? [];
  const registry =
    extra.length > 0
      ? Registry.merge([tokenService.metrics.registry, ...extra])
      : tokenService.metrics.registry;
  if (cluster.isWorker) exposeWorkerRegistry(tokenService.metrics.registry);
  const metrics: MetricsSource = {
    contentType: registry.contentType,
    read: () => (cluster.isWorker ? requestClusterMetrics() : registry.metrics()),
  };
  return createServer(kw, {
    routes: routeTable({
      kw,
      publicBaseUrl: opts.publicBaseUrl,
      metrics,
      tokenService,
      keyEvents: new KeyEventStreams(kw, kw.config.server.keyEvents),
    }),
    ...(opts.responseHeaders ? { responseHeaders: opts.responseHeaders } : {}),
  });
}

function buildTokenService(kw: Keywarden) {
  return {
    kw,
    auth: new ClientAuthenticator(kw, { pollSeconds: kw.config.server.keyRefreshSeconds }),
    metrics: new TokenServiceMetrics(kw.config),
    audit: { activity: kw.createSignActivity(), denied: kw.createDeniedRecorder() },
  };
}

/** `scheduling`: the one process that also records integrity findings in the audit log. */
function openDaemonRuntime(config: KeywardenConfig, log: Logger, scheduling: boolean): Promise<Runtime> {
  return openRuntime(config, { log, audit: storeAuditLog(), auditIntegrity: scheduling });
}

/**
 * What the one scheduling process runs (the single process, or the cluster primary): the
 * runtime, the scheduler with its start-up reconcile and periodic jobs, the lifecycle metrics it
 * feeds, and the key cache those gauges read (kept current with changes other processes make).
 */
async function startScheduling(
  config: KeywardenConfig,
  log: Logger,
): Promise<{ rt: Runtime; scheduler: Scheduler; lifecycle: LifecycleMetrics }> {
  const rt = await openDaemonRuntime(config, log, true);
  const lifecycle = new LifecycleMetrics(rt.keywarden);
  const hooks = lifecycle.schedulerHooks();
  const jobs = rt.keywarden.periodicJobs({ onOrphanScan: hooks.onOrphanScan });
  const scheduler = new Scheduler(rt.keywarden, hooks, { jobs });
  await scheduler.start();
  rt.keywarden.startKeyRefresh();
  return { rt, scheduler, lifecycle };
}

/** Builds the HTTP server and listens. */
async function startHttp(
  kw: Keywarden,
  listen: Listen,
  opts: Omit<HttpServerOptions, 'publicBaseUrl'> = {},
): Promise<{ app: FastifyInstance; address: string }> {
  const app = createHttpServer(kw, {
    ...opts,
    publicBaseUrl: publicBaseUrl(kw.config.server.publicUrl, listen).url,
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

/** `serve --workers 1`: scheduler and HTTP in this one process. */
export async function serveSingle(config: KeywardenConfig, log: Logger, listen: Listen): Promise<never> {
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
  const { app, address } = await startHttp(rt.keywarden, listen, { metricsRegistries: [lifecycle.registry] });
  log.info({ address, scopes: config.scopes.map((s) => s.name) }, 'keywarden serving');
  return onShutdownSignal(log, async () => {
    await app.close();
    await scheduler.stop();
    await rt.close();
    return 0;
  });
}

/** A cluster worker: HTTP only, with its own runtime; the primary runs the scheduler. */
export async function serveWorker(
  config: KeywardenConfig,
  log: Logger,
  listen: Listen,
  slot: number,
): Promise<never> {
  const rt = await openDaemonRuntime(config, log, false);
  // Each worker polls the store itself: revocations and new keys reach it as they reach a
  // separate daemon, within server.keyRefreshSeconds.
  rt.keywarden.startKeyRefresh();
  const { app, address } = await startHttp(rt.keywarden, listen, {
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
export async function servePrimary(
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
