import { createServer as createHttpServer, type ServerOptions as ServerOptionsHttp } from 'node:http';
import fastify, { type FastifyInstance } from 'fastify';
import type { LifecycleContext } from '../lifecycle/context';
import { registerErrorHandling } from './errors';
import { registerHealthRoutes } from './health-routes';
import { JwksFastPath } from './jwks-fast-path';
import { registerJwksRoutes } from './jwks-routes';

export interface ServerOptions {
  /** Base URL relying parties reach this server at (for `jwks_uri`). */
  publicBaseUrl: string;
  /** Extra route plugins (sign/verify/metrics) registered by the composition root. */
  plugins?: ((app: FastifyInstance) => void)[];
  /** Constant headers added to every response (a worker's `x-keywarden-worker`). */
  responseHeaders?: Readonly<Record<string, string>>;
}

/** The server options fastify has resolved (defaults applied) when it calls serverFactory. */
interface ResolvedServerOptions {
  /** node:http server options (fastify's `http` option), passed on as fastify would. */
  http?: ServerOptionsHttp;
  keepAliveTimeout: number;
  requestTimeout: number;
  connectionTimeout: number;
  maxRequestsPerSocket: number | null;
}

/**
 * The HTTP surface: thin adapters over the lifecycle. Bodies are size-limited, JSON only, and
 * every failure is a JSON error with a proper status; no request can crash the process.
 */
export function createServer(ctx: LifecycleContext, opts: ServerOptions): FastifyInstance {
  const responseHeaders = opts.responseHeaders ?? {};
  const jwksFastPath = new JwksFastPath(ctx, responseHeaders);
  const app = fastify({
    // No fastify logger: with one, fastify makes a child logger and a finish/error listener
    // pair for every request even when request logging is off, a visible share of a JWKS
    // answer in bench/profile/jwks.ts. Errors are logged by registerErrorHandling.
    logger: false,
    bodyLimit: ctx.config.server.bodyLimitBytes,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    // Duplicate JSON keys and prototype pollution attempts are refused at parse time.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // The server fastify would make, with the JWKS fast path in front of fastify's handler.
    // fastify passes its resolved options; the timeouts are set as fastify sets them itself.
    serverFactory: (handler, options) => {
      const o = options as unknown as ResolvedServerOptions;
      const server = createHttpServer(o.http ?? {}, (req, res) => {
        if (!jwksFastPath.handle(req, res)) handler(req, res);
      });
      server.keepAliveTimeout = o.keepAliveTimeout;
      server.requestTimeout = o.requestTimeout;
      server.setTimeout(o.connectionTimeout);
      if (o.maxRequestsPerSocket !== null && o.maxRequestsPerSocket > 0)
        server.maxRequestsPerSocket = o.maxRequestsPerSocket;
      return server;
    },
  });
  // fastify marks itself closing before preClose hooks run; from then on fastify answers every
  // request (503 and `Connection: close` while in-flight requests drain).
  app.addHook('preClose', (done) => {
    jwksFastPath.close();
    done();
  });
  const headers = Object.entries(responseHeaders);
  if (headers.length > 0) {
    app.addHook('onRequest', (_req, reply, done) => {
      for (const [k, v] of headers) reply.header(k, v);
      done();
    });
  }
  registerErrorHandling(app, ctx.log.child({ component: 'http' }));
  registerJwksRoutes(app, ctx, opts.publicBaseUrl);
  registerHealthRoutes(app, ctx);
  for (const p of opts.plugins ?? []) p(app);
  return app;
}
