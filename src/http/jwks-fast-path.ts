import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Keywarden } from '../lifecycle';
import type { ScopeConfig } from '../policy/scope';
import { JWKS_CONTENT_TYPE, jwksPath } from './jwks-routes';

/**
 * Answers `GET /scopes/<scope>/.well-known/jwks.json` straight from node:http, before fastify
 * makes a request and a reply object, runs its router and its hooks. The JWKS is the one
 * anonymous route every relying party polls, and fastify's per-request machinery was the largest
 * cost left on it (docs/benchmarks.md §2).
 *
 * It answers only what it can answer exactly as the fastify route would (the same answerJwks,
 * the same headers): a GET of a configured scope's exact path, keys loaded, server not closing.
 * Everything else returns false and goes to fastify unchanged: HEAD, a query string, any other
 * path or spelling, a request during shutdown (fastify's 503 + `Connection: close`), a scope
 * whose keys are not loaded (503 NO_ACTIVE_KEY), and an exception (fastify's error handling
 * then answers the same request). createServer turns it off for good when a root-level request
 * hook is added, so no such hook ever misses a JWKS request.
 */
export class JwksFastPath {
  private readonly scopes: ReadonlyMap<string, ScopeConfig>;
  private readonly extraHeaders: readonly (readonly [string, string])[];
  private on = true;
  private count = 0;

  /** `extraHeaders` are added to every answer, as createServer adds them to fastify's. */
  constructor(
    private readonly kw: Keywarden,
    extraHeaders: Readonly<Record<string, string>> = {},
  ) {
    this.scopes = new Map(kw.config.scopes.map((s) => [jwksPath(s.name), s]));
    this.extraHeaders = Object.entries(extraHeaders);
  }

  /** From here on every request goes to fastify (at shutdown: which sheds it with 503). */
  turnOff(): void {
    this.on = false;
  }

  get enabled(): boolean {
    return this.on;
  }

  /** Requests answered here since start (tests and diagnostics). */
  get answered(): number {
    return this.count;
  }

  /** Answers the request and returns true, or returns false having written nothing. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.on || req.method !== 'GET') return false;
    const scope = this.scopes.get(req.url ?? '');
    if (scope === undefined) return false;
    try {
      const answer = this.kw.answerJwks(scope, req.headers['if-none-match']);
      if (answer === undefined) return false;
      const headers: Record<string, string | number> = {};
      for (const [k, v] of this.extraHeaders) headers[k] = v;
      headers['content-type'] = JWKS_CONTENT_TYPE;
      headers['cache-control'] = answer.cacheControl;
      headers.etag = answer.etag;
      if (answer.notModified) {
        res.writeHead(304, headers);
        res.end();
      } else {
        headers['content-length'] = answer.bytes.length;
        res.writeHead(200, headers);
        res.end(answer.bytes);
      }
      this.count++;
      return true;
    } catch (e) {
      // Logged here because fastify's retry may succeed, and a failure that passes would go unseen.
      this.kw.log.warn({ scope: scope.name, err: (e as Error).message }, 'JWKS fast path failed');
      // Nothing sent yet: fastify answers the request (its error handler if it throws again).
      // Headers already sent: the answer cannot be completed or replaced, so drop the connection.
      if (!res.headersSent) return false;
      res.destroy();
      return true;
    }
  }
}
