import * as https from 'node:https';
import type { TLSSocket } from 'node:tls';
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
import { requestPrimaryReadiness, servePrimaryReadiness } from './cluster/primary-readiness';
import {
  LISTEN_FAILED_EXIT,
  RELOAD,
  RELOAD_RESULT,
  WORKER_LISTEN_FAILED,
  WORKER_READY,
  isMessage,
  requestConfig,
  sendToPrimary,
  type ConfigText,
  type Reload,
} from './cluster/config-channel';
import { parseConfigSnapshot, type LoadedConfig } from './config/load-config';
import { ConfigReloader } from './config/reloader';
import { operatorAuthorities, tlsServerOptions, type TlsServerOptions } from './config/tls-options';
import { socketOperator } from './admin';
import { adminRouteGroup } from './http/admin-routes';
import { certificateOperatorResolver } from './http/operator-certificate';
import { createAdminServer } from './http/admin-server';
import { listenOnAdminSocket, prepareAdminSocket, type PreparedAdminSocket } from './http/admin-socket';
import { ClientAuthenticator } from './http/auth';
import { FrontServer, probeListen, type ListenAddress } from './http/front-server';
import { LifecycleMetrics } from './http/lifecycle-metrics';
import { TokenServiceMetrics } from './http/metrics';
import type { MetricsSource } from './http/ops-routes';
import { publicBaseUrl } from './http/public-url';
import { KeyEventStreams } from './http/key-events';
import { ReloadMetrics } from './http/reload-metrics';
import { routeTable, type RouteGroup } from './http/routes';
import { createServer, requestHandlerOf } from './http/server';
import type { Keywarden } from './lifecycle';
import { createLogger } from './log';
import { openRuntime, storeAuditLog, type Runtime, type RuntimeGeneration } from './main';
import { disableCoreDumps } from './process-hardening';
import type { ConfigChanges, ConfigReloadOutcome } from './policy/config-changes';
import { KeywardenError } from './policy/errors';
import type { KeywardenConfig } from './policy/scope';
import { Scheduler } from './scheduler/scheduler';
import { collectStartupGarbage } from './startup-garbage';

export { parseWorkerCount } from './cluster';

/** What `keywarden serve` was asked for on its command line. */
export interface ServeRequest {
  host?: string;
  port?: number;
  workers?: number;
  /** --log-level; default the config's `logLevel`. */
  logLevel?: string;
}

/** Where `serve` listens. */
export type Listen = ListenAddress;

/** The audit actor of a reload: a signal carries no sender a process could name. */
const RELOAD_ACTOR = 'system:sighup';

/**
 * `keywarden serve`: the daemon (scheduler + HTTP) until SIGTERM/SIGINT; SIGHUP reloads the config.
 *
 * With `--workers N` (default: one per CPU) the process is a node:cluster primary: it runs the
 * scheduler (the only process that does) and N worker processes serve HTTP on the shared port,
 * each with its own PKCS#11 sessions, store connection and key cache (SoftHSM and pkcs11js
 * scale across processes, not threads). `--workers 1` is a single process doing both. A worker
 * process runs serveAsWorker instead.
 */
export async function serve(file: LoadedConfig, req: ServeRequest): Promise<never> {
  // From the first instant: SIGHUP's default action would end the process while it starts.
  process.on('SIGHUP', hupWhileStarting);
  const config = file.config;
  const log = createLogger(req.logLevel ?? config.logLevel, 1);
  prepareProcess(log);
  const listen = listenAddress(config, req);
  // The certificate, key and client CAs are checked before anything starts (CONFIG_INVALID, exit
  // 3): a daemon that would only fail at its first handshake must not claim to serve.
  tlsServerOptions(config, new Date());
  const advertised = publicBaseUrl(config.server.publicUrl, listen, config.server.tls !== undefined);
  if (advertised.warning) log.warn(advertised.warning);
  // Before the store and backends open (migrations, the start-up reconcile: they write), so a
  // busy port stops start-up with LISTEN_FAILED and nothing written.
  await probeListen(listen);
  const workers = req.workers ?? defaultWorkerCount();
  if (workers === 1) return serveSingle(file, log, listen);
  return servePrimary(file, log, listen, workers);
}

function listenAddress(config: KeywardenConfig, req: ServeRequest): Listen {
  return { host: req.host ?? config.server.host, port: req.port ?? config.server.port };
}

function prepareProcess(log: Logger): void {
  // I3: no core dump of any keywarden process (workers inherit the limit; set it anyway).
  disableCoreDumps(log);
  // A request must never take the daemon down; anything that escapes is logged.
  process.on('unhandledRejection', (e) => log.error({ err: (e as Error)?.message }, 'unhandled rejection'));
}

export interface HttpServerOptions {
  publicBaseUrl: string;
  /** Registries served on `/metrics` next to the token service's (the key lifecycle's). */
  metricsRegistries?: readonly Registry[];
  /** Constant headers on every answer (a worker's `x-keywarden-worker`). */
  responseHeaders?: Readonly<Record<string, string>>;
  /**
   * The token service's metrics, when they outlive this server (the daemon keeps one per process
   * across reloads, so counters never restart at 0); default: the server's own.
   */
  tokenMetrics?: TokenServiceMetrics;
  /** Never listens itself: a FrontServer hands it requests (createServer's `detached`). */
  detached?: boolean;
  /** Route groups after the public ones (the admin API for operator certificates). */
  extraRoutes?: readonly RouteGroup[];
  /**
   * The key-set change streams this app serves (started when it is ready, stopped when it
   * closes); default: its own. The daemon keeps the reference to end them at a reload or SIGTERM,
   * which a detached app's close alone would not do in time (see `switchServing`).
   */
  keyEvents?: KeyEventStreams;
}

/**
 * The HTTP server with its collaborators, built here and nowhere else: the token service's
 * client authenticator, metrics and request audit, and `/metrics` (in a worker of `serve
 * --workers N`, the sum over every worker and the primary).
 */
export function createHttpServer(kw: Keywarden, opts: HttpServerOptions): FastifyInstance {
  const tokenService = buildTokenService(kw, opts.tokenMetrics);
  const extra = opts.metricsRegistries ?? [];
  const registry =
    extra.length > 0
      ? Registry.merge([tokenService.metrics.registry, ...extra])
      : tokenService.metrics.registry;
  if (cluster.isWorker && !opts.tokenMetrics) exposeWorkerRegistry(tokenService.metrics.registry);
  const metrics: MetricsSource = {
    contentType: registry.contentType,
    read: () => (cluster.isWorker ? requestClusterMetrics() : registry.metrics()),
  };
  return createServer(kw, {
    routes: [
      ...routeTable({
        kw,
        publicBaseUrl: opts.publicBaseUrl,
        metrics,
        // A worker's readiness includes the primary's: it alone makes keys (the scheduler).
        ...(cluster.isWorker
          ? { extraReadiness: async () => ({ scheduler: await requestPrimaryReadiness() }) }
          : {}),
        tokenService,
        keyEvents: opts.keyEvents ?? new KeyEventStreams(kw, kw.config.server.keyEvents),
      }),
      ...(opts.extraRoutes ?? []),
    ],
    ...(opts.responseHeaders ? { responseHeaders: opts.responseHeaders } : {}),
    ...(opts.detached ? { detached: true } : {}),
  });
}

function buildTokenService(kw: Keywarden, metrics?: TokenServiceMetrics) {
  return {
    kw,
    auth: new ClientAuthenticator(kw, { pollSeconds: kw.config.server.keyRefreshSeconds }),
    metrics: metrics ?? new TokenServiceMetrics(kw.config),
    audit: { activity: kw.createSignActivity(), denied: kw.createDeniedRecorder() },
  };
}

/** `scheduling`: the one process that also records integrity findings in the audit log. */
function openDaemonRuntime(config: KeywardenConfig, log: Logger, scheduling: boolean): Promise<Runtime> {
  // A backend that cannot be opened for a reason no retry fixes ends the start (exit 6):
  // src/lifecycle/require-backends.ts says which, and why.
  return openRuntime(config, {
    log,
    audit: storeAuditLog(),
    auditIntegrity: scheduling,
    requireBackends: true,
  });
}

/** The runtime's own facade as a generation (its key cache stops when a reload replaces it). */
function firstGeneration(rt: Runtime): RuntimeGeneration {
  return { keywarden: rt.keywarden, ctx: rt.ctx, release: () => rt.ctx.cache.stop() };
}

/** What the one scheduling process runs (the single process, or the cluster primary). */
interface Scheduling {
  rt: Runtime;
  scheduler: Scheduler;
  lifecycle: LifecycleMetrics;
  reloads: ReloadMetrics;
  /** The generation the scheduler and the lifecycle metrics work with. */
  gen: RuntimeGeneration;
}

/**
 * The runtime, the scheduler with its start-up reconcile and periodic jobs, the lifecycle metrics
 * it feeds, and the key cache those gauges read (kept current with changes other processes make).
 */
async function startScheduling(config: KeywardenConfig, log: Logger): Promise<Scheduling> {
  const rt = await openDaemonRuntime(config, log, true);
  const lifecycle = new LifecycleMetrics(rt.keywarden);
  const scheduler = new Scheduler(rt.keywarden, lifecycle.schedulerHooks(), {
    jobs: jobsFor(rt.keywarden, lifecycle),
  });
  await scheduler.start();
  rt.keywarden.startKeyRefresh();
  return { rt, scheduler, lifecycle, reloads: new ReloadMetrics(), gen: firstGeneration(rt) };
}

function jobsFor(kw: Keywarden, lifecycle: LifecycleMetrics) {
  return kw.periodicJobs({ onOrphanScan: lifecycle.schedulerHooks().onOrphanScan });
}

/**
 * A reload's first steps in the scheduling process: the new config's facade (its key cache
 * loaded), then the scheduler on it, which reconciles added and changed scopes at once (an added
 * scope gets its first key before any HTTP side serves it) and re-arms every scope's timer. The
 * previous generation is returned for the caller to release once nothing uses it.
 */
async function reconfigureScheduling(
  s: Scheduling,
  gen: RuntimeGeneration,
  changes: ConfigChanges,
): Promise<RuntimeGeneration> {
  await s.scheduler.reconfigure(gen.keywarden, jobsFor(gen.keywarden, s.lifecycle), [
    ...changes.scopesAdded,
    ...changes.scopesChanged,
  ]);
  gen.keywarden.startKeyRefresh();
  s.lifecycle.reconfigure(gen.keywarden);
  const previous = s.gen;
  s.gen = gen;
  return previous;
}

/** A reload's outcome, applied or refused: the reload metrics, then the audit log. */
async function recordReload(s: Scheduling, o: ConfigReloadOutcome): Promise<void> {
  s.reloads.record(o.applied, s.gen.keywarden.clock.now());
  await s.gen.keywarden.recordConfigReload(o, RELOAD_ACTOR);
}

/** The HTTP side of one process: the listening front, and what outlives reloads. */
interface HttpSide {
  front: FrontServer;
  listen: Listen;
  tokenMetrics: TokenServiceMetrics;
  metricsRegistries: readonly Registry[];
  responseHeaders(config: KeywardenConfig): Readonly<Record<string, string>>;
  log: Logger;
}

/** One config's HTTP app (behind the front), the generation it serves from, and its TLS files as read. */
interface Serving {
  gen: RuntimeGeneration;
  app: FastifyInstance;
  /**
   * The app's key-set change streams. They never end by themselves, so they would hold the front's
   * count of requests in flight: a reload ends them when it switches (clients reconnect to the new
   * app, `Last-Event-ID` telling it what they know), SIGTERM when the drain starts.
   */
  keyEvents: KeyEventStreams;
  /** server.tls read and checked (null: plain HTTP); a reload installs it on the listening sockets. */
  tls: TlsServerOptions | null;
}

/** Builds (and readies) the app serving `kw`, detached from any socket, with its key-event streams. */
async function buildApp(
  kw: Keywarden,
  http: HttpSide,
): Promise<{ app: FastifyInstance; keyEvents: KeyEventStreams }> {
  const keyEvents = new KeyEventStreams(kw, kw.config.server.keyEvents);
  const app = createHttpServer(kw, {
    publicBaseUrl: publicBaseUrl(kw.config.server.publicUrl, http.listen, kw.config.server.tls !== undefined)
      .url,
    metricsRegistries: http.metricsRegistries,
    responseHeaders: http.responseHeaders(kw.config),
    tokenMetrics: http.tokenMetrics,
    detached: true,
    extraRoutes: operatorAdminRoutes(kw, http.log),
    keyEvents,
  });
  await app.ready();
  return { app, keyEvents };
}

/**
 * Builds what serves `gen` over HTTP. Throws having changed nothing (the generation released)
 * when the app cannot be built.
 */
async function prepareServing(gen: RuntimeGeneration, http: HttpSide): Promise<Serving> {
  try {
    // Read before anything switches: a renewed certificate that does not check out refuses the reload.
    const tls = tlsServerOptions(gen.keywarden.config, gen.keywarden.clock.now());
    return { gen, ...(await buildApp(gen.keywarden, http)), tls };
  } catch (e) {
    gen.release();
    throw e;
  }
}

/**
 * The switch of a reload on the HTTP side: the listener's security settings (TLS: this is where
 * `server.setSecureContext(...)` of each `http.front.servers` plugs in, from the new config's
 * certificates; plain HTTP has none), the token metrics' scopes, then `next` answers every new
 * request. `previous` is closed and released once the requests it took are answered (`retiring`
 * settles then). Nothing here throws: the reload is committed by the time it runs.
 */
function switchServing(http: HttpSide, previous: Serving, next: Serving, releaseGen: boolean): Promise<void> {
  applyListenerSecurity(http.front, next.tls);
  http.tokenMetrics.setScopes(next.gen.keywarden.config);
  const replaced = http.front.use(requestHandlerOf(next.app));
  // The replaced app's streams end now (its key cache is about to stop); their clients reconnect
  // within a second and reach `next`. Left open, they would hold `replaced` forever.
  previous.keyEvents.stop();
  return replaced.then(async () => {
    await previous.app
      .close()
      .catch((e: Error) => http.log.warn({ err: e.message }, 'closing a replaced app failed'));
    if (releaseGen) previous.gen.release();
  });
}

/**
 * TLS on reload: the certificates, key, client CAs and lowest version read by prepareServing go to
 * every listening socket; connections made from now on use them, open ones keep theirs. Whether
 * TLS is on at all, and whether it asks for client certificates, are fixed at start
 * (policy/config-changes.ts refuses a reload that changes them). Plain HTTP has nothing to renew.
 */
function applyListenerSecurity(front: FrontServer, tls: TlsServerOptions | null): void {
  if (!tls) return;
  for (const server of front.servers) (server as https.Server).setSecureContext(tls);
}

/**
 * SIGTERM's drain of the front (front-server.ts), with the key-event streams ended as it starts:
 * they are requests in flight that never finish, and would hold the drain for its whole
 * in-flight limit. Their clients reconnect to another instance (a reconnect here is refused
 * with 503 SHUTTING_DOWN, as every request during the drain).
 */
function drainFront(http: HttpSide, current: Serving): Promise<void> {
  const drained = http.front.drain();
  current.keyEvents.stop();
  return drained;
}

/** The listening front for `config`: node:https with server.tls, node:http without. */
function frontServerFor(config: KeywardenConfig, log: Logger): FrontServer {
  const tls = tlsServerOptions(config, new Date());
  if (!tls) return new FrontServer({ log });
  return new FrontServer({
    log,
    scheme: 'https',
    createServer: (listener) => {
      const server = https.createServer(tls, listener);
      // No renegotiation: a connection's client certificate (mutual TLS) is read once and cannot
      // change under it, and a client cannot make the server redo handshakes.
      server.on('secureConnection', (socket: TLSSocket) => socket.disableRenegotiation());
      return server;
    },
  });
}

/** Set on the first SIGTERM/SIGINT: a reload asked for after it is ignored. */
let shuttingDown = false;

/**
 * The admin API on the public TLS listener, for operators with a certificate an operator CA issued
 * (server.tls.operatorCaFile); none without one: admin routes never share the public listener
 * unless a client certificate names the operator.
 */
function operatorAdminRoutes(kw: Keywarden, log: Logger): RouteGroup[] {
  const authorities = operatorAuthorities(kw.config);
  if (!authorities) return [];
  return [
    adminRouteGroup({
      facade: () => kw,
      log: log.child({ component: 'admin', transport: 'operator-certificate' }),
      resolveOperator: certificateOperatorResolver(authorities, () => kw.clock.now()),
    }),
  ];
}

/** Checks the admin socket's path and group (and clears a stale socket) before anything opens. */
function prepareAdmin(config: KeywardenConfig, log: Logger): Promise<PreparedAdminSocket | null> {
  return config.admin.socket ? prepareAdminSocket(config.admin.socket, log) : Promise.resolve(null);
}

/**
 * The admin API on the unix socket, served by the scheduling process only (the single process,
 * or the cluster primary): one process owns the socket file, admin work (HSM checks, audit
 * verification) never takes a worker's share of signing, and changes it makes reach the workers
 * through the store as any daemon's do. The operator is the OS user the CLI claims (the socket's
 * mode and group are what admitted it; docs/operations.md "Who the audit log names").
 */
async function startAdminSocket(
  facade: () => Keywarden,
  sock: PreparedAdminSocket | null,
  log: Logger,
): Promise<FastifyInstance | null> {
  if (!sock) return null;
  const adminLog = log.child({ component: 'admin' });
  const app = createAdminServer(facade(), [
    adminRouteGroup({ facade, log: adminLog, resolveOperator: (req) => socketOperator(req.headers) }),
  ]);
  await listenOnAdminSocket(app, sock, adminLog);
  return app;
}

/** Runs `stop` once on the first SIGTERM/SIGINT, then exits with its code. */
function onShutdownSignal(log: Logger, stop: () => Promise<number>): Promise<never> {
  const handler = (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal }, 'shutting down: draining requests');
    stop().then(
      (code) => {
        log.info({ code }, 'stopped');
        process.exit(code);
      },
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

let hupPending = false;
/** A SIGHUP before the daemon serves: the reload runs once it does (the file may have changed). */
function hupWhileStarting(): void {
  hupPending = true;
}

/** SIGHUP reloads (signals during a reload fold into one more). */
function onReloadSignal(reloader: ConfigReloader, log: Logger): void {
  process.off('SIGHUP', hupWhileStarting);
  if (hupPending) {
    log.info({ signal: 'SIGHUP' }, 'reload requested while starting');
    void reloader.request();
  }
  process.on('SIGHUP', () => {
    if (shuttingDown) {
      log.info({ signal: 'SIGHUP' }, 'reload ignored: shutting down');
      return;
    }
    log.info({ signal: 'SIGHUP' }, 'reload requested');
    void reloader.request();
  });
}

/** `serve --workers 1`: scheduler and HTTP in this one process. */
export async function serveSingle(file: LoadedConfig, log: Logger, listen: Listen): Promise<never> {
  const config = file.config;
  // libuv sized its pool when this process started (bin/keywarden sets the variable first);
  // too small a pool makes PKCS#11 signatures queue behind each other.
  const sessions = maxBackendConcurrency(config);
  if (Number(process.env.UV_THREADPOOL_SIZE ?? 4) < sessions) {
    log.warn(
      { UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)', sessions },
      'UV_THREADPOOL_SIZE is smaller than the PKCS#11 sessions: signatures queue; set it before start',
    );
  }
  const adminSocket = await prepareAdmin(config, log);
  const sched = await startScheduling(config, log);
  const http: HttpSide = {
    front: frontServerFor(config, log),
    listen,
    tokenMetrics: new TokenServiceMetrics(config),
    metricsRegistries: [sched.lifecycle.registry, sched.reloads.registry],
    responseHeaders: () => ({}),
    log,
  };
  let current = await prepareServing(sched.gen, http);
  collectStartupGarbage(log);
  void http.front.use(requestHandlerOf(current.app));
  let addresses: string[];
  try {
    addresses = await http.front.listen(listen);
  } catch (e) {
    await current.app.close();
    await sched.scheduler.stop();
    await sched.rt.close();
    throw e;
  }
  const admin = await startAdminSocket(() => sched.gen.keywarden, adminSocket, log);
  log.info(
    {
      address: addresses[0],
      addresses,
      adminSocket: adminSocket?.path ?? null,
      scopes: config.scopes.map((s) => s.name),
    },
    'keywarden serving',
  );
  const retiring = new Set<Promise<void>>();
  const reloader = new ConfigReloader(
    file.source,
    {
      current: () => sched.gen.keywarden.config,
      apply: async (next, changes) => {
        const gen = await sched.rt.reconfigure(next.config);
        const serving = await prepareServing(gen, http);
        // Committed from here: the scheduler first (added scopes get their keys), then HTTP.
        await reconfigureScheduling(sched, gen, changes);
        const previous = current;
        current = serving;
        const r = switchServing(http, previous, serving, true);
        retiring.add(r);
        void r.finally(() => retiring.delete(r));
      },
      outcome: (o) => recordReload(sched, o),
    },
    log,
  );
  onReloadSignal(reloader, log);
  return onShutdownSignal(log, async () => {
    await admin?.close();
    await drainFront(http, current);
    await Promise.all(retiring);
    await current.app.close();
    await sched.scheduler.stop();
    await sched.rt.close();
    return 0;
  });
}

/**
 * A cluster worker: HTTP only, with its own runtime; the primary runs the scheduler. Its config
 * comes from the primary (the text the primary runs, validated here by the same loader), and so
 * does every reload: the primary sends the new text once it has applied it.
 */
export async function serveAsWorker(req: ServeRequest): Promise<never> {
  const slot = workerSlot() ?? cluster.worker?.id ?? 0;
  const first = await requestConfig();
  const config = parseConfigSnapshot(first).config;
  const log = createLogger(req.logLevel ?? config.logLevel, 1).child({ worker: slot });
  prepareProcess(log);
  // systemd's ExecReload signals the primary only; a hangup sent to the whole process group must
  // not end a worker (the default action), and the primary's reload reaches every worker anyway.
  process.on('SIGHUP', () => log.debug('SIGHUP: the primary reloads every worker'));
  const listen = listenAddress(config, req);
  const rt = await openDaemonRuntime(config, log, false);
  // Each worker polls the store itself: revocations and new keys reach it as they reach a
  // separate daemon, within server.keyRefreshSeconds.
  rt.keywarden.startKeyRefresh();
  const tokenMetrics = new TokenServiceMetrics(config);
  exposeWorkerRegistry(tokenMetrics.registry);
  const http: HttpSide = {
    front: frontServerFor(config, log),
    listen,
    tokenMetrics,
    metricsRegistries: [],
    responseHeaders: (c) => workerResponseHeaders(c.server, slot),
    log,
  };
  let current = await prepareServing(firstGeneration(rt), http);
  collectStartupGarbage(log);
  void http.front.use(requestHandlerOf(current.app));
  try {
    await http.front.listen(listen);
  } catch (e) {
    const message = (e as Error).message;
    log.error({ err: message }, 'worker cannot listen');
    // The primary stops start-up with this reason; exit once it has the message.
    if (process.connected && process.send) {
      process.send({ type: WORKER_LISTEN_FAILED, message }, () => process.exit(LISTEN_FAILED_EXIT));
    } else process.exit(LISTEN_FAILED_EXIT);
    return new Promise<never>(() => undefined);
  }
  sendToPrimary({ type: WORKER_READY, version: first.version });
  log.debug({ listen }, 'worker serving');
  const retiring = new Set<Promise<void>>();
  let reloads = Promise.resolve();
  const reload = async (m: ConfigText): Promise<void> => {
    try {
      if (http.front.isDraining) throw new Error('shutting down');
      const next = parseConfigSnapshot(m).config;
      const serving = await prepareServing(await rt.reconfigure(next), http);
      serving.gen.keywarden.startKeyRefresh();
      const previous = current;
      current = serving;
      const r = switchServing(http, previous, serving, true);
      retiring.add(r);
      void r.finally(() => retiring.delete(r));
      log.info({ version: m.version }, 'worker reloaded config');
      sendToPrimary({ type: RELOAD_RESULT, version: m.version, ok: true });
    } catch (e) {
      log.error({ version: m.version, err: (e as Error).message }, 'worker cannot apply the reloaded config');
      sendToPrimary({ type: RELOAD_RESULT, version: m.version, ok: false, error: (e as Error).message });
    }
  };
  process.on('message', (m: unknown) => {
    if (isMessage<Reload>(m, RELOAD)) reloads = reloads.then(() => reload(m));
  });
  return onShutdownSignal(log, async () => {
    // Requests in flight finish; new ones get 503 + Connection: close until clients go quiet.
    await drainFront(http, current);
    await Promise.all(retiring);
    await current.app.close();
    await rt.close();
    return 0;
  });
}

/**
 * The cluster primary: opens the store first (so migrations run once, before any worker),
 * runs the scheduler (start-up reconcile included, so workers find every scope's keys), then
 * forks the workers and supervises them; it says it serves once every worker listens. SIGHUP
 * reloads here first, then in every worker; SIGTERM drains every worker and exits 0.
 */
export async function servePrimary(
  file: LoadedConfig,
  log: Logger,
  listen: Listen,
  workers: number,
): Promise<never> {
  const config = file.config;
  const adminSocket = await prepareAdmin(config, log);
  const sched = await startScheduling(config, log);
  collectStartupGarbage(log);
  const admin = await startAdminSocket(() => sched.gen.keywarden, adminSocket, log);
  let running: ConfigText = { text: file.text, source: file.source, files: file.files ?? {}, version: 1 };
  const threadPool = threadPoolSizeFor(config);
  const supervisor = new WorkerSupervisor({
    workers,
    log,
    env: { UV_THREADPOOL_SIZE: String(threadPool) },
    config: () => running,
  });
  // /metrics answered by any worker reports the sum over all of them, plus the primary's own
  // metrics: the key lifecycle (the scheduler runs here), reloads and its process metrics.
  // Listening before the workers start, so not even their first scrape goes unanswered.
  serveClusterMetrics(primaryMetricsRegistry([sched.lifecycle.registry, sched.reloads.registry]), log);
  // Workers answer /readyz; key generation runs here, so they ask (src/cluster/primary-readiness.ts).
  servePrimaryReadiness(() => sched.gen.keywarden.readiness(), log);
  try {
    await supervisor.start();
  } catch (e) {
    await admin?.close();
    await sched.scheduler.stop();
    await sched.rt.close();
    throw e instanceof KeywardenError ? e : new KeywardenError('INTERNAL', (e as Error).message);
  }
  log.info(
    {
      address: `${config.server.tls ? 'https' : 'http'}://${listen.host}:${listen.port}`,
      workers,
      adminSocket: adminSocket?.path ?? null,
      threadPoolPerWorker: threadPool,
      scopes: config.scopes.map((s) => s.name),
    },
    'keywarden serving',
  );
  const reloader = new ConfigReloader(
    file.source,
    {
      current: () => sched.gen.keywarden.config,
      apply: async (next, changes) => {
        const gen = await sched.rt.reconfigure(next.config);
        // Committed from here: the scheduler first (added scopes get their keys), then workers.
        const previous = await reconfigureScheduling(sched, gen, changes);
        previous.release();
        running = {
          text: next.text,
          source: next.source,
          files: next.files ?? {},
          version: running.version + 1,
        };
        const failed = (await supervisor.reloadWorkers()).filter((r) => !r.ok);
        // The supervisor replaced them; their successors start on the running config.
        if (failed.length > 0) log.warn({ failed }, 'workers that could not apply the reload were replaced');
      },
      outcome: (o) => recordReload(sched, o),
    },
    log,
  );
  onReloadSignal(reloader, log);
  return onShutdownSignal(log, async () => {
    await admin?.close();
    const drained = await supervisor.stop();
    await sched.scheduler.stop();
    await sched.rt.close();
    return drained ? 0 : 1;
  });
}
