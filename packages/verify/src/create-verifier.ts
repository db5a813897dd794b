import { fetchTrustingCa, type TrustedCa } from './ca-fetch.js';
import { systemClock, type Clock } from './clock.js';
import { insecureUrlProblem } from './fetch-document.js';
import { KeyEventSubscription } from './key-event-subscription.js';
import { RemoteKeySet } from './remote-key-set.js';
import { tokenTypeProblem } from './token-type.js';
import {
  DEFAULT_CLOCK_SKEW_SECONDS,
  DEFAULT_MAX_TOKEN_BYTES,
  MAX_CLOCK_SKEW_SECONDS,
  validateToken,
  type ValidationOptions,
  type ValidationResult,
} from './validate-token.js';

/** Options of createVerifier. `issuer` and `audience` are required: validation is complete or nothing. */
export interface VerifierOptions {
  /** The scope's issuer; tokens must carry exactly this `iss`, and only its keys are used. */
  issuer: string;
  /** This relying party; tokens must name it in `aud`. */
  audience: string;
  /** The scope's JWKS URL; when absent it is discovered from `${issuer}/.well-known/openid-configuration`. */
  jwksUri?: string;
  /** Source of now for validation and caching; defaults to the system clock. */
  clock?: Clock;
  /** 0..300 seconds; default 30. */
  clockSkewSeconds?: number;
  /** fetch implementation; defaults to the global fetch. Not together with `ca`. */
  fetch?: typeof fetch;
  /**
   * PEM CA certificate(s) trusted for the https discovery and JWKS fetches instead of Node's
   * default roots: a keywarden listener with a certificate from a private CA. Redirects are then
   * not followed. Not together with `fetch` (whose TLS settings are its own).
   */
  ca?: TrustedCa;
  /** How many unknown-kid refetches per minute all tokens together may cause; default 6. */
  refetchBudget?: { perMinute: number };
  /** Upper bound on how long a JWKS response is used, whatever its max-age; default 600. */
  maxCacheSeconds?: number;
  /** Default 8192. */
  maxTokenBytes?: number;
  /**
   * Allow plain-http discovery/JWKS URLs to hosts other than loopback. Off by default:
   * whoever can alter the JWKS in transit can mint tokens.
   */
  allowInsecureHttp?: boolean;
  /**
   * The token type this relying party accepts, e.g. `at+jwt` (explicit typing, RFC 8725):
   * tokens whose header `typ` is another type, or absent, are refused (`typ_mismatch`).
   * Compared case-insensitively, with `application/` optional. Default: any `typ`.
   */
  typ?: string;
  /**
   * Revocation push: subscribe to the scope's key-set change stream (Server-Sent Events) and
   * refresh the keys the moment the daemon announces a change, so a revoked key stops verifying
   * within seconds instead of when the cached JWKS expires. While the stream is down, keys are
   * refreshed as the JWKS's Cache-Control says, as without it. The URL is the discovery
   * document's `keywarden_key_events_uri`, or derived from a keywarden `jwksUri`
   * (`.../.well-known/jwks.json` -> `.../key-events`), or `url`. Off by default: the stream holds
   * a connection open, so call `close()` when done. `true` takes the defaults.
   */
  keyEvents?:
    | boolean
    | {
        url?: string;
        /** Silence (no event, no heartbeat) for this long reopens the stream; default 45, min 2. */
        idleTimeoutSeconds?: number;
      };
}

/** What a verifier's key-events subscription is doing (for health checks and logs). */
export interface KeyEventsStatus {
  enabled: boolean;
  /** The stream URL, once known (discovery may have to answer first). */
  url: string | null;
  /** True while the stream is open. */
  connected: boolean;
  /** Key events received so far. */
  events: number;
  lastEventId: string | null;
  /** Why the stream last ended or could not open (it may be open again since); null if never. */
  problem: string | null;
}

/** A relying party's verifier for one issuer and audience. */
export interface Verifier {
  /**
   * Complete validation of a token (see validateToken) against the issuer's published keys.
   * Never rejects: failures, including JWKS fetch failures (`jwks_unavailable`), are results.
   */
  verify(token: string): Promise<ValidationResult>;
  /** The key-events subscription's state (`enabled: false` unless `keyEvents` was set). */
  keyEvents(): KeyEventsStatus;
  /** Ends the key-events subscription, if any. The verifier still verifies afterwards (polling). */
  close(): void;
}

export const DEFAULT_REFETCH_PER_MINUTE = 6;
export const DEFAULT_MAX_CACHE_SECONDS = 600;
const DEFAULT_KEY_EVENTS_IDLE_SECONDS = 45;
const KEY_EVENTS_RETRY_MS = 500;
const KEY_EVENTS_MAX_RETRY_MS = 30_000;
const JWKS_PATH_SUFFIX = '/.well-known/jwks.json';

/**
 * Creates a verifier for the tokens of one keywarden scope (I6): same complete validation as
 * the server, keys from the scope's JWKS, cached per Cache-Control, unknown kids refetched once
 * each under a global budget. Throws TypeError/RangeError for invalid options.
 */
export function createVerifier(options: VerifierOptions): Verifier {
  const o = checkVerifierOptions(options);
  const keys = new RemoteKeySet({
    issuer: o.issuer,
    ...(o.jwksUri !== undefined ? { jwksUri: o.jwksUri } : {}),
    clock: o.clock,
    fetch: o.fetch,
    refetchPerMinute: o.refetchPerMinute,
    maxCacheSeconds: o.maxCacheSeconds,
    allowInsecureHttp: o.allowInsecureHttp,
  });
  const validationOptions = (now: Date): ValidationOptions => ({
    issuer: o.issuer,
    audience: o.audience,
    now,
    clockSkewSeconds: o.clockSkewSeconds,
    maxTokenBytes: o.maxTokenBytes,
    ...(o.typ !== undefined ? { typ: o.typ } : {}),
  });

  async function verify(token: string): Promise<ValidationResult> {
    try {
      if (!keys.isFresh(o.clock.now().getTime())) {
        const refreshed = await keys.refresh();
        if (!refreshed.ok) return { valid: false, reason: 'jwks_unavailable', message: refreshed.problem };
        ensureSubscribed();
      }
      let requestedKid: string | undefined;
      const result = await validateToken(
        token,
        (kid) => {
          requestedKid = kid;
          return keys.lookup(kid);
        },
        validationOptions(o.clock.now()),
      );
      if (result.valid || result.reason !== 'kid_unknown' || requestedKid === undefined) return result;
      if (!(await keys.refreshForUnknownKid(requestedKid))) return result;
      return await validateToken(token, keys.lookup, validationOptions(o.clock.now()));
    } catch (e) {
      // Nothing above should throw; if something does, deny rather than escape.
      return {
        valid: false,
        reason: 'jwks_unavailable',
        message: `verification failed unexpectedly: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
  }

  const events = o.keyEvents;
  let subscription: KeyEventSubscription | null = null;
  let eventsProblem: string | null = null;
  let closed = false;
  const subscribe = (url: string) => {
    if (closed || subscription || !events) return;
    const problem = insecureUrlProblem(url, o.allowInsecureHttp);
    if (problem) {
      eventsProblem = `key events: ${problem}`;
      return;
    }
    subscription = new KeyEventSubscription({
      url,
      fetch: o.fetch,
      allowInsecureHttp: o.allowInsecureHttp,
      idleTimeoutMs: events.idleTimeoutSeconds * 1000,
      retryMs: KEY_EVENTS_RETRY_MS,
      maxRetryMs: KEY_EVENTS_MAX_RETRY_MS,
      onEvent: (event) => void keys.applyKeyEvent(event),
    });
    subscription.start();
  };
  /**
   * Opens the stream once its URL is known: given, derived from a given jwksUri, or (after the
   * first successful discovery, which may come at any later refresh if the daemon was down at
   * start) from the discovery document.
   */
  function ensureSubscribed(): void {
    if (!events || subscription || closed) return;
    const given = events.url ?? (o.jwksUri !== undefined ? keyEventsUrlFor(o.jwksUri) : undefined);
    const url =
      given ?? keys.eventsUri ?? (keys.jwksUrl !== null ? keyEventsUrlFor(keys.jwksUrl) : undefined);
    if (url !== undefined) subscribe(url);
    else if (keys.jwksUrl !== null)
      eventsProblem = 'key events: the discovery document names no keywarden_key_events_uri';
  }
  if (events) {
    ensureSubscribed();
    // Load the keys now rather than on the first token, and learn the stream's URL from discovery.
    void keys.refresh().then((r) => {
      if (r.ok) ensureSubscribed();
    });
  }

  return {
    verify,
    keyEvents: () => ({
      enabled: events !== null,
      url: subscription ? subscription.url : null,
      connected: subscription?.connected ?? false,
      events: subscription?.events ?? 0,
      lastEventId: subscription?.lastEventId ?? null,
      problem: subscription ? subscription.lastProblem : eventsProblem,
    }),
    close: () => {
      closed = true;
      subscription?.close();
    },
  };
}

/** A keywarden scope's key-events URL next to its JWKS URL, or undefined for another shape. */
function keyEventsUrlFor(jwksUri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(jwksUri);
  } catch {
    return undefined;
  }
  if (!url.pathname.endsWith(JWKS_PATH_SUFFIX) || url.search !== '') return undefined;
  url.pathname = `${url.pathname.slice(0, -JWKS_PATH_SUFFIX.length)}/key-events`;
  return url.toString();
}

interface CheckedOptions {
  issuer: string;
  audience: string;
  jwksUri: string | undefined;
  clock: Clock;
  clockSkewSeconds: number;
  fetch: typeof fetch;
  refetchPerMinute: number;
  maxCacheSeconds: number;
  maxTokenBytes: number;
  allowInsecureHttp: boolean;
  typ: string | undefined;
  keyEvents: { url: string | undefined; idleTimeoutSeconds: number } | null;
}

function checkVerifierOptions(options: VerifierOptions): CheckedOptions {
  if (options === null || typeof options !== 'object')
    throw new TypeError('createVerifier: options are required');
  const { issuer, audience, jwksUri } = options;
  if (typeof issuer !== 'string' || issuer.trim().length === 0) {
    throw new TypeError('createVerifier: issuer is required (the scope issuer tokens must carry)');
  }
  if (typeof audience !== 'string' || audience.trim().length === 0) {
    throw new TypeError(
      'createVerifier: audience is required (this relying party, as tokens name it in aud)',
    );
  }
  const allowInsecureHttp = options.allowInsecureHttp === true;
  if (jwksUri !== undefined) {
    if (typeof jwksUri !== 'string') throw new TypeError('createVerifier: jwksUri must be a string');
    const problem = insecureUrlProblem(jwksUri, allowInsecureHttp);
    if (problem) throw new TypeError(`createVerifier: jwksUri: ${problem}`);
  } else {
    const problem = insecureUrlProblem(issuer, allowInsecureHttp);
    if (problem) throw new TypeError(`createVerifier: cannot discover keys from issuer: ${problem}`);
  }
  const clock = options.clock ?? systemClock;
  if (typeof clock.now !== 'function') throw new TypeError('createVerifier: clock must have now()');
  if (options.ca !== undefined && options.fetch !== undefined) {
    throw new TypeError(
      'createVerifier: give ca or fetch, not both (a custom fetch brings its own TLS trust)',
    );
  }
  if (options.ca !== undefined && !isPemList(options.ca)) {
    throw new TypeError('createVerifier: ca must be PEM text or a Buffer, or an array of them');
  }
  const fetchImpl =
    options.ca !== undefined ? fetchTrustingCa(options.ca) : (options.fetch ?? globalThis.fetch);
  if (typeof fetchImpl !== 'function') throw new TypeError('createVerifier: no fetch implementation');
  const clockSkewSeconds = options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS;
  if (
    typeof clockSkewSeconds !== 'number' ||
    !(clockSkewSeconds >= 0 && clockSkewSeconds <= MAX_CLOCK_SKEW_SECONDS)
  ) {
    throw new RangeError(`createVerifier: clockSkewSeconds must be between 0 and ${MAX_CLOCK_SKEW_SECONDS}`);
  }
  const refetchPerMinute = options.refetchBudget?.perMinute ?? DEFAULT_REFETCH_PER_MINUTE;
  if (typeof refetchPerMinute !== 'number' || !Number.isFinite(refetchPerMinute) || refetchPerMinute < 0) {
    throw new RangeError('createVerifier: refetchBudget.perMinute must be a number >= 0');
  }
  const maxCacheSeconds = options.maxCacheSeconds ?? DEFAULT_MAX_CACHE_SECONDS;
  if (typeof maxCacheSeconds !== 'number' || !Number.isFinite(maxCacheSeconds) || maxCacheSeconds <= 0) {
    throw new RangeError('createVerifier: maxCacheSeconds must be a number > 0');
  }
  const maxTokenBytes = options.maxTokenBytes ?? DEFAULT_MAX_TOKEN_BYTES;
  if (!Number.isInteger(maxTokenBytes) || maxTokenBytes <= 0) {
    throw new RangeError('createVerifier: maxTokenBytes must be a positive integer');
  }
  if (options.typ !== undefined) {
    const problem = tokenTypeProblem(options.typ);
    if (problem) throw new TypeError(`createVerifier: ${problem}`);
  }
  const keyEvents = checkKeyEventsOption(options.keyEvents, jwksUri, allowInsecureHttp);
  return {
    keyEvents,
    issuer,
    audience,
    jwksUri,
    clock,
    clockSkewSeconds,
    fetch: fetchImpl,
    refetchPerMinute,
    maxCacheSeconds,
    maxTokenBytes,
    allowInsecureHttp,
    typ: options.typ,
  };
}

function checkKeyEventsOption(
  option: VerifierOptions['keyEvents'],
  jwksUri: string | undefined,
  allowInsecureHttp: boolean,
): CheckedOptions['keyEvents'] {
  if (option === undefined || option === false) return null;
  const given = option === true ? {} : option;
  if (given === null || typeof given !== 'object')
    throw new TypeError('createVerifier: keyEvents must be a boolean or an object');
  const { url } = given;
  if (url !== undefined) {
    if (typeof url !== 'string') throw new TypeError('createVerifier: keyEvents.url must be a string');
    const problem = insecureUrlProblem(url, allowInsecureHttp);
    if (problem) throw new TypeError(`createVerifier: keyEvents.url: ${problem}`);
  } else if (jwksUri !== undefined && keyEventsUrlFor(jwksUri) === undefined) {
    throw new TypeError(
      `createVerifier: keyEvents: no stream URL can be derived from jwksUri ${jwksUri} (not .../.well-known/jwks.json); give keyEvents.url`,
    );
  }
  const idle = given.idleTimeoutSeconds ?? DEFAULT_KEY_EVENTS_IDLE_SECONDS;
  if (typeof idle !== 'number' || !Number.isFinite(idle) || idle < 2) {
    throw new RangeError('createVerifier: keyEvents.idleTimeoutSeconds must be a number >= 2');
  }
  return { url, idleTimeoutSeconds: idle };
}

function isPemList(ca: unknown): boolean {
  const one = (v: unknown) => (typeof v === 'string' && v.includes('-----BEGIN')) || Buffer.isBuffer(v);
  return Array.isArray(ca) ? ca.length > 0 && ca.every(one) : one(ca);
}
