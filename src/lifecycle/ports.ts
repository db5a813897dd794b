import type { KeyBackend } from '../backends/key-backend';
import type { AuditEvent } from '../policy/audit-events';
import type { ClientRecord, StoredClient } from '../policy/clients';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';

/**
 * The small interfaces use cases take (SPIRE's rotator takes a two-method CA manager and a
 * clock): the composition root (src/main.ts) supplies the store-backed ones, unit tests supply
 * fakes. Nothing here names TypeORM, a DataSource or a concrete backend.
 */

/** What KeyStore.readChangesSince found. */
export type KeySetRead =
  | { version: string; kind: 'unchanged' }
  | { version: string; kind: 'all'; keys: KeyRecord[] }
  | { version: string; kind: 'changed'; ids: string[]; keys: KeyRecord[] };

/** Key rows: reads, and writes that each commit on their own. */
export interface KeyStore {
  listByScope(scope: string): Promise<KeyRecord[]>;
  listAll(): Promise<KeyRecord[]>;
  findById(id: string): Promise<KeyRecord | null>;
  findByKid(kid: string): Promise<KeyRecord | null>;
  /** By full kid, or by a unique prefix of at least 8 characters (REQUEST_INVALID if ambiguous). */
  findByKidOrPrefix(kidOrPrefix: string): Promise<KeyRecord | null>;
  /** The state reconcile last recorded per row of the scope (informational, never trusted). */
  lastStates(scope: string): Promise<Map<string, string | null>>;
  /** The same for every row of every scope, in one read. */
  allLastStates(): Promise<Map<string, string | null>>;
  /** The key set version and, unless it equals `known`, every key, read together. */
  readIfChanged(known: string | null): Promise<{ version: string; keys: KeyRecord[] | null }>;
  /**
   * What changed since the key set version `known`, read together with the version: nothing, the
   * changed rows (`ids` names every row changed, `keys` holds those that still exist), or every
   * row when the store cannot tell which changed (then the caller reloads all).
   */
  readChangesSince(known: string | null): Promise<KeySetRead>;
  insertGenerating(key: KeyRecord, now: Date): Promise<void>;
  completeGenerating(
    id: string,
    fields: Pick<KeyRecord, 'kid' | 'publicJwk' | 'backendRef'>,
    now: Date,
  ): Promise<void>;
  deleteGenerating(id: string): Promise<void>;
  /** Sets revokedAt unless already set; true when this call revoked it. */
  revoke(id: string, at: Date, reason: string): Promise<boolean>;
  markDestroyed(id: string, at: Date): Promise<void>;
  setLastState(id: string, state: string): Promise<void>;
}

/** API client rows: reads, and writes that each commit on their own. */
export interface ClientStore {
  insert(client: ClientRecord): Promise<void>;
  findById(id: string): Promise<ClientRecord | null>;
  findByName(name: string): Promise<ClientRecord | null>;
  /** The client bound to the certificate with this SPKI SHA-256 (base64url), if any. */
  findByCertificate(certSpkiSha256: string): Promise<ClientRecord | null>;
  /** True when a row was removed. */
  delete(id: string): Promise<boolean>;
  /** Replaces secret hash and seal if the row still has `expectedSecretHash`; true when it did. */
  updateSecret(
    id: string,
    expectedSecretHash: string,
    change: { secretHash: string; seal: string },
    now: Date,
  ): Promise<boolean>;
  /** Replaces the seal if it still is `expected`; true when it did. */
  replaceSeal(id: string, expected: string | null, seal: string): Promise<boolean>;
  /** Every row as stored, without trusting its shape. */
  scan(): Promise<StoredClient[]>;
  /** Each row's version (a digest of its content), by id. */
  versions(): Promise<Map<string, string>>;
}

/** The audit log, append-only (I7): where use cases record what they did. */
export interface AuditLog {
  record(event: AuditEvent): Promise<void>;
}

/** One transaction: key and client writes and their audit records commit together, or none. */
export interface StoreTransaction {
  keys: KeyStore;
  clients: ClientStore;
  audit: AuditLog;
}

/** The store as use cases see it. */
export interface Store {
  keys: KeyStore;
  clients: ClientStore;
  transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /** A cheap round trip for readiness; never throws. */
  ping(): Promise<{ ok: boolean; detail: string }>;
  /**
   * Whether a write would commit now (readiness): a committed write that leaves nothing behind,
   * and room left on the file system of a file store. Never throws.
   */
  writable(): Promise<{ ok: boolean; detail: string }>;
}

/** A per-scope lock held across processes (PostgreSQL advisory lock, SQLite lease). */
export interface ScopeLock {
  /** Runs `fn` if the lock is free now; `ran: false` when another process holds it. */
  tryRun<T>(scope: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
}

/** Retries `tryRun` until the lock is free or `timeoutMs` passes (operator commands). */
export async function runLocked<T>(
  lock: ScopeLock,
  scope: string,
  fn: () => Promise<T>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await lock.tryRun(scope, fn);
    if (r.ran) return r.value;
    if (Date.now() > deadline) {
      throw new KeywardenError(
        'LOCK_BUSY',
        `scope ${scope} is locked by another keywarden process; try again`,
      );
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Opens (once) and returns a configured backend by name. */
export type BackendSource = (name: string) => Promise<KeyBackend>;

/**
 * Work the daemon's scheduling process repeats on an interval (audit checkpoints, client seal
 * upkeep, orphan scans): built by the composition root, run by the scheduler, never on a
 * request path. `run` should not throw; the scheduler logs it if it does.
 */
export interface PeriodicJob {
  name: string;
  everyMs: number;
  /** Also once at start (in the background). */
  atStart: boolean;
  run(): Promise<void>;
}
