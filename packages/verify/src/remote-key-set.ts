import type { Clock } from './clock.js';
import type { KeyEvent } from './key-events.js';
import { cacheLifetimeSeconds } from './cache-control.js';
import { fetchDocument } from './fetch-document.js';
import { inspectJwks, type IgnoredJwk } from './jwks.js';
import { parseJsonObject } from './strict-json.js';
import { TokenBucket } from './token-bucket.js';
import type { VerificationKey } from './validate-token.js';

export interface RemoteKeySetOptions {
  issuer: string;
  /** When absent, discovered from `${issuer}/.well-known/openid-configuration`. */
  jwksUri?: string;
  clock: Clock;
  fetch: typeof fetch;
  /** Unknown-kid refetches allowed per minute (token bucket capacity). */
  refetchPerMinute: number;
  maxCacheSeconds: number;
  allowInsecureHttp: boolean;
}

export type RefreshResult = { ok: true } | { ok: false; problem: string };

/** Lifetime when the JWKS response gives no usable max-age. */
export const DEFAULT_CACHE_SECONDS = 60;
/** Floor on the lifetime, so max-age=0 cannot make every verify a fetch. */
export const MIN_CACHE_SECONDS = 5;
/** After a failed fetch, callers get the failure without a new fetch for this long. */
export const FAILURE_BACKOFF_SECONDS = 5;
const FETCH_TIMEOUT_MS = 10_000;
const MAX_DOCUMENT_BYTES = 1024 * 1024;
/** Bound on the memory of kids that already had their one refetch. */
const MAX_REMEMBERED_KIDS = 10_000;
const NO_KEYS: readonly VerificationKey[] = Object.freeze([]);
/** Bound on the kids a key event withdrew (they stay refused whatever a stale JWKS says). */
const MAX_WITHDRAWN_KIDS = 10_000;
/** After a key event, the JWKS is refetched until its ETag is the event's, this often at most. */
const PUSH_REFETCH_ATTEMPTS = 4;
const PUSH_REFETCH_DELAY_MS = 250;

/**
 * One issuer's keys, fetched from its JWKS and cached as the response's Cache-Control allows.
 * Concurrent callers share one in-flight fetch. An unknown kid may trigger one refetch per kid,
 * and only while a global token bucket allows: pre-publication means a legitimate kid is known
 * before it signs, so unknown kids are mostly noise or attack and must not drive fetches.
 */
export class RemoteKeySet {
  private byKid = new Map<string, VerificationKey[]>();
  private loaded = false;
  private freshUntilMs = 0;
  private etag: string | null = null;
  private inflight: Promise<RefreshResult> | null = null;
  private failure: { untilMs: number; problem: string } | null = null;
  private discovered: string | null = null;
  private discoveredEventsUri: string | null = null;
  /**
   * Kids the scope's key-events stream said left the key set (revoked or expired). They are
   * refused from the moment the event arrives, and a JWKS fetched afterwards cannot bring them
   * back (a daemon or cache that has not seen the change yet may still list them); only a later
   * event listing a kid again lifts this.
   */
  private readonly withdrawn = new Set<string>();
  private pushGeneration = 0;
  private readonly bucket: TokenBucket;
  private readonly refetchedKids = new Set<string>();
  /** Why the last JWKS fetch failed, null after a success (diagnostics). */
  lastProblem: string | null = null;
  /** JWKs left out of the last fetched JWKS, for diagnostics. */
  ignored: IgnoredJwk[] = [];

  constructor(private readonly options: RemoteKeySetOptions) {
    this.bucket = new TokenBucket(options.refetchPerMinute, 60, options.clock.now().getTime());
  }

  /** True while the cached keys may be used without fetching. */
  isFresh(nowMs: number): boolean {
    return this.loaded && nowMs < this.freshUntilMs;
  }

  /** The cached keys with this kid. */
  readonly lookup = (kid: string): readonly VerificationKey[] => this.byKid.get(kid) ?? NO_KEYS;

  /** The JWKS URL, given or once discovered. */
  get jwksUrl(): string | null {
    return this.options.jwksUri ?? this.discovered;
  }

  /** The key-events URL the discovery document advertised, once discovered. */
  get eventsUri(): string | null {
    return this.discoveredEventsUri;
  }

  /**
   * A key-set change pushed by the daemon. Kids no longer in the set stop verifying at once;
   * then the JWKS is refetched (past its Cache-Control freshness) until it is the announced set,
   * so new keys arrive too. An event for the set already held changes nothing. Never rejects.
   */
  async applyKeyEvent(event: KeyEvent): Promise<void> {
    const listed = new Set(event.kids);
    for (const kid of listed) this.withdrawn.delete(kid);
    for (const kid of this.byKid.keys()) {
      if (!listed.has(kid)) this.withdraw(kid);
    }
    this.dropWithdrawn();
    if (this.loaded && sameEtag(this.etag, event.etag)) return;
    const generation = ++this.pushGeneration;
    for (let attempt = 0; attempt < PUSH_REFETCH_ATTEMPTS; attempt++) {
      // A newer event took over, or the set is already the announced one.
      if (generation !== this.pushGeneration) return;
      // A fetch in flight may have been sent before the change: wait for it, then fetch anew.
      if (this.inflight) await this.inflight;
      const result = await this.refresh(true);
      if (result.ok && sameEtag(this.etag, event.etag)) return;
      await new Promise((r) => setTimeout(r, PUSH_REFETCH_DELAY_MS * (attempt + 1)).unref());
    }
  }

  private withdraw(kid: string): void {
    if (this.withdrawn.size >= MAX_WITHDRAWN_KIDS) {
      const oldest = this.withdrawn.values().next();
      if (!oldest.done) this.withdrawn.delete(oldest.value);
    }
    this.withdrawn.add(kid);
  }

  private dropWithdrawn(): void {
    if (this.withdrawn.size === 0) return;
    for (const kid of this.withdrawn) this.byKid.delete(kid);
  }

  /**
   * Fetches the JWKS, or joins the fetch already in flight. Never rejects. After a failure,
   * callers get that failure without a new fetch for a few seconds; `force` (a key event) fetches
   * anyway, and its failure changes nothing for them: the cached keys stay usable until their
   * Cache-Control lifetime ends, as without the event (its withdrawn kids are gone already).
   */
  refresh(force = false): Promise<RefreshResult> {
    if (this.inflight) return this.inflight;
    const nowMs = this.options.clock.now().getTime();
    if (!force && this.failure && nowMs < this.failure.untilMs)
      return Promise.resolve({ ok: false, problem: this.failure.problem });
    this.inflight = this.fetchKeys()
      .catch((e: unknown): RefreshResult => ({
        ok: false,
        problem: e instanceof Error ? e.message : String(e),
      }))
      .then((result) => {
        this.inflight = null;
        if (result.ok) this.failure = null;
        else if (!force) {
          this.failure = {
            untilMs: this.options.clock.now().getTime() + FAILURE_BACKOFF_SECONDS * 1000,
            problem: result.problem,
          };
        }
        this.lastProblem = result.ok ? null : result.problem;
        return result;
      });
    return this.inflight;
  }

  /**
   * Called when a token names a kid not in the cache. Refetches (or joins a fetch in flight)
   * at most once per kid and only within the budget; resolves true when the keys were
   * refreshed and the token deserves a second look.
   */
  async refreshForUnknownKid(kid: string): Promise<boolean> {
    if (this.refetchedKids.has(kid)) return false;
    if (!this.inflight && !this.bucket.tryTake(this.options.clock.now().getTime())) return false;
    this.rememberKid(kid);
    const result = await this.refresh();
    return result.ok;
  }

  private rememberKid(kid: string): void {
    if (this.refetchedKids.size >= MAX_REMEMBERED_KIDS) {
      const oldest = this.refetchedKids.values().next();
      if (!oldest.done) this.refetchedKids.delete(oldest.value);
    }
    this.refetchedKids.add(kid);
  }

  private async fetchKeys(): Promise<RefreshResult> {
    const uri = await this.jwksUri();
    if (!uri.ok) return uri;
    const res = await fetchDocument(uri.url, {
      fetch: this.options.fetch,
      etag: this.loaded ? this.etag : null,
      allowInsecureHttp: this.options.allowInsecureHttp,
      timeoutMs: FETCH_TIMEOUT_MS,
      maxBytes: MAX_DOCUMENT_BYTES,
    });
    if (!res.ok) return { ok: false, problem: `JWKS: ${res.problem}` };
    const lifetimeSeconds = cacheLifetimeSeconds(res.cacheControl, res.age, {
      maxSeconds: this.options.maxCacheSeconds,
      defaultSeconds: DEFAULT_CACHE_SECONDS,
      minSeconds: MIN_CACHE_SECONDS,
    });
    if (res.status === 200) {
      const inspection = inspectJwks(res.body, this.options.issuer);
      if (!inspection.ok) return { ok: false, problem: `JWKS at ${uri.url}: ${inspection.problem}` };
      const byKid = new Map<string, VerificationKey[]>();
      for (const key of inspection.keys) {
        const same = byKid.get(key.kid);
        if (same) same.push(key);
        else byKid.set(key.kid, [key]);
      }
      this.byKid = byKid;
      this.dropWithdrawn();
      this.ignored = inspection.ignored;
      this.loaded = true;
    }
    this.etag = res.etag ?? (res.status === 304 ? this.etag : null);
    this.freshUntilMs = this.options.clock.now().getTime() + lifetimeSeconds * 1000;
    return { ok: true };
  }

  private async jwksUri(): Promise<{ ok: true; url: string } | { ok: false; problem: string }> {
    if (this.options.jwksUri !== undefined) return { ok: true, url: this.options.jwksUri };
    if (this.discovered !== null) return { ok: true, url: this.discovered };
    const issuer = this.options.issuer;
    const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await fetchDocument(url, {
      fetch: this.options.fetch,
      allowInsecureHttp: this.options.allowInsecureHttp,
      timeoutMs: FETCH_TIMEOUT_MS,
      maxBytes: MAX_DOCUMENT_BYTES,
    });
    if (!res.ok) return { ok: false, problem: `discovery: ${res.problem}` };
    if (res.status !== 200) return { ok: false, problem: `discovery: unexpected HTTP ${res.status}` };
    const doc = parseJsonObject(res.body);
    if (!doc.ok) return { ok: false, problem: `discovery document at ${url} is not a JSON object` };
    // OpenID Connect Discovery §4.3: the document must be for exactly this issuer, or an
    // attacker-influenced document could point us at someone else's keys.
    if (doc.value.issuer !== issuer) {
      return {
        ok: false,
        problem: `discovery document at ${url} is for issuer ${JSON.stringify(doc.value.issuer)}`,
      };
    }
    const jwksUri = doc.value.jwks_uri;
    if (typeof jwksUri !== 'string' || jwksUri.length === 0) {
      return { ok: false, problem: `discovery document at ${url} has no jwks_uri` };
    }
    const eventsUri = doc.value.keywarden_key_events_uri;
    if (typeof eventsUri === 'string' && eventsUri.length > 0) this.discoveredEventsUri = eventsUri;
    this.discovered = jwksUri;
    return { ok: true, url: jwksUri };
  }
}

/** RFC 9110 weak comparison: a proxy that compresses the JWKS turns its ETag into a weak one. */
function sameEtag(a: string | null, b: string): boolean {
  if (a === null) return false;
  const strip = (t: string) => (t.startsWith('W/') ? t.slice(2) : t);
  return strip(a) === strip(b);
}
