import { createServer as createNodeServer, type IncomingMessage, type ServerResponse } from 'node:http';
import fastify, { type FastifyInstance } from 'fastify';
import type { Keywarden } from '../lifecycle';
import { registerErrorHandling } from './errors';
import { JwksFastPath } from './jwks-fast-path';
import { registerRouteGroups, type RouteGroup } from './routes';

declare module 'fastify' {
  interface FastifyInstance {
    /** The node:http JWKS answerer ahead of this instance's router (src/http/jwks-fast-path.ts). */
    jwksFastPath: JwksFastPath;
  }
}

export interface ServerOptions {
  /**
   * The route table (src/http/routes.ts). Each group is registered in a context of its own: a
   * request hook a group adds covers its routes; one added at the root instead turns the JWKS fast
   * path off, so the hook sees JWKS requests too.
   */
  routes: readonly RouteGroup[];
  /** Constant headers added to every response (a worker's `x-keywarden-worker`). */
  responseHeaders?: Readonly<Record<string, string>>;
  /**
   * The app never listens itself: the daemon's FrontServer (front-server.ts) owns the listening
   * socket and hands requests to `requestHandlerOf(app)`, so a reload can put a new app behind the
   * same socket. Default false (the app listens, as in tests).
   */
  detached?: boolean;
}

/** The hooks that run per request: one of these at the root would otherwise miss fast JWKS answers. */
const REQUEST_HOOKS = new Set([
  'onRequest',
  'preParsing',
  'preValidation',
  'preHandler',
  'preSerialization',
  'onSend',
  'onResponse',
  'onError',
  'onTimeout',
  'onRequestAbort',
]);

/**
 * The HTTP surface: thin adapters over the lifecycle. Bodies are size-limited, JSON only, and
 * every failure is a JSON error with a proper status; no request can crash the process.
 */
export function createServer(kw: Keywarden, opts: ServerOptions): FastifyInstance {
  const responseHeaders = opts.responseHeaders ?? {};
  const jwksFastPath = new JwksFastPath(kw, responseHeaders);
  const app = fastify({
    // No fastify logger: with one, fastify makes a child logger and a finish/error listener
    // pair for every request even when request logging is off, a visible share of a JWKS
    // answer in bench/profile/jwks.ts. Errors are logged by registerErrorHandling.
    logger: false,
    bodyLimit: kw.config.server.bodyLimitBytes,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    // Duplicate JSON keys and prototype pollution attempts are refused at parse time.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // A server that never listens: only its request listener is used.
    ...(opts.detached
      ? {
          serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) =>
            createNodeServer(handler),
        }
      : {}),
  });
  app.decorate('jwksFastPath', jwksFastPath);
  putFastPathAhead(app, jwksFastPath);
  // fastify marks itself closing (and its routes answer 503) before preClose hooks run.
  app.addHook('preClose', (done) => {
    jwksFastPath.turnOff();
    done();
  });
  const headers = Object.entries(responseHeaders);
  if (headers.length > 0) {
    app.addHook('onRequest', (_req, reply, done) => {
      for (const [k, v] of headers) reply.header(k, v);
      done();
    });
  }
  registerErrorHandling(app, kw.log.child({ component: 'http' }));
  turnOffOnRootRequestHooks(app, jwksFastPath, kw);
  registerRouteGroups(app, opts.routes);
  return app;
}

/**
 * The app's whole request handling (the JWKS fast path, then fastify) as one node:http request
 * listener, for a FrontServer (`detached` apps). Call after `app.ready()`.
 */
export function requestHandlerOf(app: FastifyInstance): (req: IncomingMessage, res: ServerResponse) => void {
  const listeners = app.server.listeners('request') as ((
    req: IncomingMessage,
    res: ServerResponse,
  ) => void)[];
  if (listeners.length !== 1) throw new Error(`expected one request listener, found ${listeners.length}`);
  return listeners[0]!;
}

/**
 * Makes the fast path the server's request listener, passing what it declines to fastify's.
 * fastify made the server (with its timeouts and options) and gave it one `request` listener;
 * that listener is moved behind the fast path. A server fastify adds later for a second address
 * of a name (`--host localhost`: 127.0.0.1 and ::1) gets fastify's listener alone.
 */
function putFastPathAhead(app: FastifyInstance, fastPath: JwksFastPath): void {
  const listeners = app.server.listeners('request') as ((
    req: IncomingMessage,
    res: ServerResponse,
  ) => void)[];
  if (listeners.length !== 1)
    throw new Error(`expected fastify's one request listener on its server, found ${listeners.length}`);
  const fastifyHandler = listeners[0]!;
  app.server.removeListener('request', fastifyHandler);
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!fastPath.handle(req, res)) fastifyHandler(req, res);
  });
}

/**
 * From here on, a request hook added at the root instance (where it runs for every route, the
 * JWKS routes included) turns the fast path off for good: a later access log, rate limit or
 * allowlist must not silently skip the most-polled route. Hooks added inside `app.register`
 * (an encapsulated child, `this !== app`) only cover that child's routes and change nothing.
 */
function turnOffOnRootRequestHooks(app: FastifyInstance, fastPath: JwksFastPath, kw: Keywarden): void {
  const addHook = app.addHook as (this: FastifyInstance, name: string, ...rest: unknown[]) => FastifyInstance;
  const guarded = function (this: FastifyInstance, name: string, ...rest: unknown[]): FastifyInstance {
    if (this === app && REQUEST_HOOKS.has(name) && fastPath.enabled) {
      fastPath.turnOff();
      kw.log.debug({ hook: name }, 'JWKS fast path off: a root-level request hook must see every request');
    }
    return addHook.call(this, name, ...rest);
  };
  app.addHook = guarded as typeof app.addHook;
}
