import { hash, type X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasGrant, type AuthenticatedClient, type DeniedRequest, type Keywarden } from '../lifecycle';
import type { Grant } from '../policy/clients';
import { KeywardenError } from '../policy/errors';
import { clientAuthorities, issuedByOneOf, validAt } from '../config/tls-options';
import { peerCertificate, type PeerCertificate } from './client-certificate';
import { ConcurrencyLimit } from './concurrency-limit';

/** What a request presents to prove which API client sent it. */
export interface PresentedCredentials {
  /** The Authorization header, as sent. */
  authorization: string | undefined;
  /** The TLS client certificate of its connection (mutual TLS), or null. */
  certificate: PeerCertificate | null;
}

export interface ClientAuthOptions {
  /** How often the clients table is polled for changes (the revocation bound), seconds. */
  pollSeconds: number;
  /** Cached answers are ignored when no poll has succeeded for this many poll intervals. Default 3. */
  staleAfterPolls?: number;
  /** Upper bound on cached answers of each kind (good and bad secrets). Default 10,000. */
  maxEntries?: number;
  /** How long a refused secret is remembered, seconds. Default 60. */
  rejectedTtlSeconds?: number;
}

const BEARER_RE = /^Bearer +([\x21-\x7e]{1,256}) *$/i;

/**
 * A bearer secret and its cache key (its SHA-256: the cache keeps no secret as a key), or null
 * when the header is absent or not `Bearer <secret>`.
 */
function bearerKey(authorization: string | undefined): { secret: string; key: string } | null {
  const m = authorization === undefined ? null : BEARER_RE.exec(authorization);
  if (!m) return null;
  const secret = m[1]!;
  return { secret, key: hash('sha256', secret, 'base64url') };
}

/**
 * Authenticates `Authorization: Bearer <secret>`, or without that header a TLS client certificate
 * (mutual TLS: the client bound to the certificate's public key), for the token routes. A header,
 * when sent, decides alone: a request is never the client of its certificate when its bearer
 * secret is wrong. A certificate is looked up only when TLS verified it against
 * server.tls.clientCaFile; the lookup is one indexed read (no scrypt), cached like a secret's
 * answer under the certificate's SPKI SHA-256.
 *
 * Checking a secret costs one store read and one scrypt (tens of ms, on purpose), which a sign
 * route serving thousands of requests a second cannot pay per request. So answers are cached in
 * memory, keyed by the SHA-256 of the presented secret (the secret itself is never kept):
 *
 * - The clients table (each row's id and content digest, clientRowVersion) is polled every
 *   `pollSeconds` (server.keyRefreshSeconds, default 2 s); any change to any client (add,
 *   remove, rotate-secret, seal, a grant edited in the database) clears every cached answer, and an
 *   answer whose client row is gone or changed since its check is dropped even when the table
 *   as a whole looks as it did at the last poll (a client added, used and removed between two
 *   polls). A removed client or a replaced secret therefore gets 401 within one poll interval
 *   plus the time of one poll query, whatever the clocks of the hosts that wrote the rows.
 * - If polls fail or stall, cached answers stop being trusted after `staleAfterPolls`
 *   intervals: requests then re-check against the store (fail closed).
 * - A secret is accepted only for a row an HSM key vouches for (its seal by the audit key,
 *   checked by the process's ClientTrust, once per row content): a row written into the store
 *   outside keywarden is refused exactly like an unknown secret, and reported.
 * - Concurrent requests with the same secret share one check, so a burst from a fresh client
 *   costs one scrypt, not one per request; refused secrets are remembered for a minute so a
 *   caller hammering with a stale secret does not turn every request into a scrypt.
 */
export class ClientAuthenticator {
  private readonly accepted = new Map<string, AuthenticatedClient>();
  private readonly rejected = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<AuthenticatedClient | null>>();
  /** Uncached checks each cost a scrypt: at most 4 at once, 64 waiting, the rest get 429. */
  private readonly checks = new ConcurrencyLimit(4, 64, 'client secret checks');
  private marker: string | null = null;
  /** Bumped whenever the cache is cleared; a check started before a clear is not cached. */
  private generation = 0;
  private lastPollOkMs = Number.NEGATIVE_INFINITY;
  private polling: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly pollMs: number;
  private readonly staleAfterMs: number;
  private readonly maxEntries: number;
  private readonly rejectedTtlMs: number;

  constructor(
    private readonly kw: Keywarden,
    opts: ClientAuthOptions,
  ) {
    this.pollMs = opts.pollSeconds * 1000;
    this.staleAfterMs = this.pollMs * (opts.staleAfterPolls ?? 3);
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.rejectedTtlMs = (opts.rejectedTtlSeconds ?? 60) * 1000;
    this.clientCas = clientAuthorities(kw.config);
  }

  /** server.tls.clientCaFile's CAs (null: no mutual TLS for API clients). */
  private readonly clientCas: X509Certificate[] | null;

  /**
   * Whether a presented certificate may name an API client now: TLS verified its chain, a CA of
   * server.tls.clientCaFile issued it (not an operator CA, which the handshake trusts too), and it
   * is inside its validity period at this request (a kept-alive connection outlives the
   * handshake's check).
   */
  certificateTrusted(certificate: PeerCertificate): boolean {
    return (
      certificate.authorized &&
      this.issuedByClientCa(certificate) &&
      validAt(certificate.x509, this.kw.clock.now())
    );
  }

  /**
   * The issuer check, once per connection: its certificate cannot change (no renegotiation) and
   * peerCertificate hands back the same object for every request on it, so only the validity
   * dates are read per request, never a signature verified again on the sign route.
   */
  private issuedByClientCa(certificate: PeerCertificate): boolean {
    if (this.clientCas === null) return false;
    let issued = this.issuerChecked.get(certificate.x509);
    if (issued === undefined) {
      issued = issuedByOneOf(certificate.x509, this.clientCas);
      this.issuerChecked.set(certificate.x509, issued);
    }
    return issued;
  }

  /** issuedByClientCa's answers, per connection's certificate, for this authenticator's CAs. */
  private readonly issuerChecked = new WeakMap<X509Certificate, boolean>();

  /** Starts polling (first poll now). The timer does not keep the process alive. */
  start(): Promise<void> {
    if (!this.timer) {
      this.timer = setInterval(() => void this.poll(), this.pollMs);
      this.timer.unref();
    }
    return this.poll();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reads the clients change marker; clears the cache when it moved or cannot be read. */
  poll(): Promise<void> {
    this.polling ??= this.doPoll().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  private async doPoll(): Promise<void> {
    try {
      // A changed table is also checked against the audit key's seals (reported, not only refused).
      const { marker, versions } = await this.kw.pollClients(this.marker);
      if (marker !== this.marker) this.clear();
      else this.evictChanged(versions);
      this.marker = marker;
      this.lastPollOkMs = performance.now();
    } catch (e) {
      this.clear();
      this.kw.log.warn({ err: (e as Error).message }, 'client change poll failed; auth cache cleared');
    }
  }

  /**
   * Drops accepted answers whose client row is gone or changed since it was checked. The
   * table can look the same at two polls while a client came and went in between: added,
   * authenticated (and cached), removed. Comparing markers alone would keep that answer.
   */
  private evictChanged(versions: ReadonlyMap<string, string>): void {
    for (const [key, client] of this.accepted) {
      if (versions.get(client.id) !== client.version) this.accepted.delete(key);
    }
  }

  private clear(): void {
    this.accepted.clear();
    this.rejected.clear();
    // Requests from now on must not join a check that read the table before the change.
    this.inflight.clear();
    this.generation++;
  }

  /**
   * The client presenting these credentials, or UNAUTHENTICATED: a bearer secret (the header, when
   * sent, decides), else a client certificate TLS verified. A plain string is an Authorization
   * header alone.
   */
  async authenticate(presented: PresentedCredentials | string | undefined): Promise<AuthenticatedClient> {
    const { authorization, certificate } =
      typeof presented === 'object' ? presented : { authorization: presented, certificate: null };
    if (authorization === undefined && certificate) return this.authenticateCertificate(certificate);
    const key = bearerKey(authorization);
    if (key === null) {
      throw new KeywardenError(
        'UNAUTHENTICATED',
        'send Authorization: Bearer <client secret>, or connect with a client certificate bound to a client',
      );
    }
    return this.cached(key.key, invalidSecret, () =>
      this.checks.run(() => this.kw.checkClientSecret(key.secret)),
    );
  }

  /**
   * The client of these credentials when a cached answer accepted them and polls are current, at
   * once and without a promise: what nearly every request of a busy client gets. Null otherwise
   * (not cached, refused, stale, or credentials of the wrong form): `authenticate` then decides,
   * with the same rules. Nothing here is looser than there: the same key, the same freshness
   * bound, the same per-request certificate checks.
   */
  cachedClient(presented: PresentedCredentials): AuthenticatedClient | null {
    if (performance.now() - this.lastPollOkMs > this.staleAfterMs) return null;
    const { authorization, certificate } = presented;
    let key: string;
    if (authorization === undefined && certificate) {
      if (!this.certificateTrusted(certificate)) return null;
      key = `cert:${certificate.spkiSha256}`;
    } else {
      const bearer = bearerKey(authorization);
      if (bearer === null) return null;
      key = bearer.key;
    }
    return this.accepted.get(key) ?? null;
  }

  private authenticateCertificate(certificate: PeerCertificate): Promise<AuthenticatedClient> {
    if (!this.certificateTrusted(certificate)) {
      return Promise.reject(
        new KeywardenError(
          'UNAUTHENTICATED',
          `the client certificate is not issued by a CA of server.tls.clientCaFile, or not valid now` +
            (certificate.problem ? ` (${certificate.problem})` : ''),
        ),
      );
    }
    // `:` never occurs in a base64url secret hash: the two kinds of entries cannot collide.
    const key = `cert:${certificate.spkiSha256}`;
    return this.cached(key, unboundCertificate, () => this.kw.checkClientCertificate(certificate.spkiSha256));
  }

  /** A cached answer for `key`, or `lookup` once (shared by concurrent requests), remembered. */
  private async cached(
    key: string,
    refused: () => KeywardenError,
    lookup: () => Promise<AuthenticatedClient | null>,
  ): Promise<AuthenticatedClient> {
    const now = performance.now();
    const fresh = now - this.lastPollOkMs <= this.staleAfterMs;
    if (fresh) {
      const hit = this.accepted.get(key);
      if (hit) return hit;
      const refusedUntil = this.rejected.get(key);
      if (refusedUntil !== undefined && refusedUntil > now) throw refused();
    }
    const client = await (this.inflight.get(key) ?? this.check(key, lookup));
    if (!client) throw refused();
    return client;
  }

  /** One lookup (a store read, and a scrypt for a secret), shared by concurrent requests. */
  private check(
    key: string,
    lookup: () => Promise<AuthenticatedClient | null>,
  ): Promise<AuthenticatedClient | null> {
    const generation = this.generation;
    const check: Promise<AuthenticatedClient | null> = lookup()
      .then((client) => {
        // Cached only if no change was seen meanwhile and polls are current.
        if (generation === this.generation && performance.now() - this.lastPollOkMs <= this.staleAfterMs) {
          this.remember(key, client);
        }
        return client;
      })
      .finally(() => {
        if (this.inflight.get(key) === check) this.inflight.delete(key);
      });
    this.inflight.set(key, check);
    return check;
  }

  private remember(key: string, client: AuthenticatedClient | null): void {
    const map: Map<string, unknown> = client ? this.accepted : this.rejected;
    // Maps iterate in insertion order: dropping the first entry drops the oldest.
    if (map.size >= this.maxEntries) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    if (client) this.accepted.set(key, client);
    else this.rejected.set(key, performance.now() + this.rejectedTtlMs);
  }
}

function invalidSecret(): KeywardenError {
  return new KeywardenError('UNAUTHENTICATED', 'the client secret is not valid');
}

function unboundCertificate(): KeywardenError {
  return new KeywardenError('UNAUTHENTICATED', 'no API client is bound to this client certificate');
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The authenticated API client of a request that passed `requireGrant` (null before, and on
     * every other route). A request decoration (`decorateRequestClient`), not a WeakMap entry per
     * request: fastify's request objects keep one shape, and the sign route reads it per token.
     */
    apiClient: AuthenticatedClient | null;
  }
}

/** Declares `request.apiClient` on `app` (the token routes' context), before its routes. */
export function decorateRequestClient(app: FastifyInstance): void {
  app.decorateRequest('apiClient', null);
}

/** Where refused requests are reported (the audit log's rate-limited `access.denied`). */
export interface DeniedRequests {
  recordDenied(d: DeniedRequest): void;
}

/**
 * An onRequest hook for `/v1/scopes/:scope/...`: authenticate (401), then the scope must exist
 * (404), then the client must hold `grant` on it (403). It runs before the body is read, so
 * an unauthenticated caller cannot make the server parse anything. Every 401 and 403 goes to
 * `denied` (I7: failed attempts are evidence too); the secret presented is never recorded.
 *
 * A callback hook, not an async one: a client whose answer is cached (nearly every request) is
 * authorised at once, with no promise for fastify to wait on; anything else goes through
 * `authenticate`.
 */
export function requireGrant(kw: Keywarden, auth: ClientAuthenticator, grant: Grant, denied: DeniedRequests) {
  /** Scope and grant, for an authenticated client: throws SCOPE_NOT_FOUND or FORBIDDEN. */
  const authorize = (req: FastifyRequest, scopeName: string, client: AuthenticatedClient): void => {
    const scope = kw.scope(scopeName);
    if (!hasGrant(client, scope.name, grant)) {
      denied.recordDenied({
        status: 403,
        ip: req.ip,
        client: client.name,
        scope: scope.name,
        route: `${req.method} ${req.routeOptions.url ?? req.url}`,
        reason: `no-${grant}-grant`,
      });
      throw new KeywardenError(
        'FORBIDDEN',
        `client ${client.name} has no ${grant} grant on scope ${scope.name}`,
      );
    }
    req.apiClient = client;
  };

  const refused = (
    req: FastifyRequest,
    reply: FastifyReply,
    scopeName: string,
    presented: PresentedCredentials,
    e: unknown,
  ): void => {
    if (!(e instanceof KeywardenError && e.code === 'UNAUTHENTICATED')) return;
    const { authorization, certificate } = presented;
    const sent = authorization !== undefined || certificate !== null;
    denied.recordDenied({
      status: 401,
      ip: req.ip,
      client: null,
      scope: configuredScope(kw, scopeName),
      route: `${req.method} ${req.routeOptions.url ?? req.url}`,
      reason:
        authorization === undefined && certificate
          ? auth.certificateTrusted(certificate)
            ? 'unknown-certificate'
            : 'untrusted-certificate'
          : sent
            ? 'bad-credentials'
            : 'no-credentials',
    });
    // RFC 6750 §3: a 401 for a bearer-protected resource names the scheme.
    reply.header(
      'www-authenticate',
      sent ? 'Bearer realm="keywarden", error="invalid_token"' : 'Bearer realm="keywarden"',
    );
  };

  return (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    const scopeName = (req.params as { scope?: string }).scope ?? '';
    const presented: PresentedCredentials = {
      authorization: req.headers.authorization,
      certificate: peerCertificate(req.raw),
    };
    const known = auth.cachedClient(presented);
    if (known !== null) {
      // A throw here (404, 403) is fastify's to catch and answer.
      authorize(req, scopeName, known);
      done();
      return;
    }
    auth.authenticate(presented).then(
      (client) => {
        try {
          authorize(req, scopeName, client);
        } catch (e) {
          done(e as Error);
          return;
        }
        done();
      },
      (e: unknown) => {
        refused(req, reply, scopeName, presented, e);
        done(e as Error);
      },
    );
  };
}

/** The scope name if it is configured; an unknown name from a URL is not worth recording. */
function configuredScope(kw: Keywarden, name: string): string | null {
  try {
    return kw.scope(name).name;
  } catch {
    return null;
  }
}
