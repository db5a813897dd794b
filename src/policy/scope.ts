import type { RsaModulusBits, SigningAlg } from './algorithms';
import type { BackendConfigBase } from './backend-type';

/** Absolute ceiling on any key's lifetime (I1): one constant, shared with the verify package. */
export { ABSOLUTE_MAX_KEY_LIFETIME_SECONDS } from '@keywarden/verify';

/** Timing rules of one scope's keys, in seconds. */
export interface KeyPolicy {
  /** How long a new key is in the JWKS before it signs (>= 2 x jwksMaxAge). */
  prepublishSeconds: number;
  /** How long a key signs. */
  activeForSeconds: number;
  /** How long after it stops signing a key stays in the JWKS (>= maxTokenTtl). */
  verifyGraceSeconds: number;
  /** Cap on `exp - iat` of tokens this scope signs. */
  maxTokenTtlSeconds: number;
  /** Delay after expiry (or revocation) before the backend object is destroyed. */
  destroyAfterSeconds: number;
  /** Cap on prepublish + activeFor + verifyGrace; never above the absolute ceiling. */
  maxKeyLifetimeSeconds: number;
  /** Upper bound of the JWKS `Cache-Control: max-age`. */
  jwksMaxAgeSeconds: number;
}

/** A trust domain (I5): its own issuer, audiences, keys and JWKS. */
export interface ScopeConfig {
  name: string;
  issuer: string;
  audiences: readonly string[];
  alg: SigningAlg;
  /** RSA modulus size for RS256/PS256 scopes. */
  rsaBits: RsaModulusBits;
  /** Name of the configured backend that holds this scope's keys. */
  backend: string;
  /** Cron expression for the scope's reconcile. */
  schedule: string;
  /** Non-production scopes may use software-protected backend keys (Azure `EC`/`RSA`). */
  production: boolean;
  policy: KeyPolicy;
}

export type PinSource = { env: string } | { file: string };

/**
 * A configured backend. Its type's own fields are its folder's business (e.g.
 * src/backends/pkcs11/config.ts); policy knows only what every backend is.
 */
export type BackendConfig = BackendConfigBase;

export interface ServerConfig {
  host: string;
  port: number;
  /** Upper bound on request bodies, bytes. */
  bodyLimitBytes: number;
  /** How often each daemon reloads keys from the store (revocations propagate within it). */
  keyRefreshSeconds: number;
  /** Base URL relying parties reach this server at (for `jwks_uri`); default http://host:port. */
  publicUrl?: string;
  /**
   * With `serve --workers N`, name the answering worker slot in an `x-keywarden-worker` header
   * on every response. Off by default: a debugging aid, not something to tell anonymous clients.
   */
  workerHeader: boolean;
  /** The key-set change streams relying parties subscribe to (per process: each worker its own). */
  keyEvents: KeyEventsConfig;
  /** HTTPS on the listener; absent: plain HTTP (the loopback quick start). */
  tls?: TlsConfig;
}

export interface KeyEventsConfig {
  /** A comment line on every open stream this often, so both ends notice a dead connection. */
  heartbeatSeconds: number;
  /** Open streams one client address may hold; more are refused with 429. */
  maxConnectionsPerAddress: number;
  /** Open streams in all; more are refused with 503. */
  maxConnections: number;
}

/**
 * `server.tls`, paths resolved against the config file's directory. The files themselves are
 * read and checked by src/config/tls-options.ts (at `config check` and at every start).
 */
export interface TlsConfig {
  /** PEM: the server certificate first, then any intermediates. */
  certFile: string;
  /** PEM: the certificate's private key (unencrypted; the file's permissions protect it). */
  keyFile: string;
  /**
   * PEM: the CA certificate(s) that issue API clients' certificates. Set: the listener asks for a
   * client certificate (optional per connection) and clients bound to one can sign with it (mTLS).
   */
  clientCaFile?: string;
  /**
   * PEM: the CA certificate(s) that issue operators' certificates. Set: the admin API is served on
   * this listener too, to operators presenting a certificate one of these CAs issued directly.
   */
  operatorCaFile?: string;
  /** Lowest protocol version accepted: TLS 1.2 or later, always. */
  minVersion: 'TLSv1.2' | 'TLSv1.3';
}

/** The local admin API's unix socket (`admin.socket`). */
export interface AdminSocketConfig {
  /** Absolute path of the socket (a relative one in the file resolves against dataDir). */
  path: string;
  /**
   * The group whose members may connect (the socket is mode 0660, owned by the daemon's user and
   * this group); null: the daemon user's own primary group.
   */
  group: string | null;
}

export interface AdminConfig {
  /** null: no admin socket (the CLI then needs --local, or --socket naming another daemon's). */
  socket: AdminSocketConfig | null;
}

export interface SchedulerConfig {
  /**
   * Scope reconciles one daemon runs at once. Start-up and a cron tick shared by many scopes queue
   * behind this bound (decision instants first) instead of starting every scope together.
   */
  concurrency: number;
}

export interface StoreConfig {
  /** `sqlite:<path>` or `postgres://...` */
  url: string;
}

export interface AuditConfig {
  /** Evidence about a key is kept at least this long after it expired. */
  evidencePeriodSeconds: number;
  /** A signed checkpoint every N records ... */
  checkpointEveryRecords: number;
  /** ... or every M seconds, whichever comes first. */
  checkpointEverySeconds: number;
  /** Backend that holds the audit checkpoint key. */
  backend: string | null;
}

/** The validated, frozen configuration. */
export interface KeywardenConfig {
  /** Absolute path of the file it came from (for messages), or `<inline>`. */
  source: string;
  /** Directory that relative paths in the file were resolved against. */
  baseDir: string;
  dataDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  server: ServerConfig;
  admin: AdminConfig;
  store: StoreConfig;
  backends: Readonly<Record<string, BackendConfig>>;
  scopes: readonly ScopeConfig[];
  scheduler: SchedulerConfig;
  audit: AuditConfig;
}
