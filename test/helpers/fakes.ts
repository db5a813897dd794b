/**
 * In-memory fakes of the ports use cases take (src/lifecycle/ports.ts) and of a KeyBackend, and
 * `fakeRuntime`, which wires them into a LifecycleContext and the Keywarden facade the way
 * openRuntime (src/main.ts) wires the real ones: no SoftHSM2, no database, time from a FakeClock.
 * The real KeyCache, KeyIntegrity and ClientTrust run on top, so what a unit test observes is the
 * use cases' behaviour, not the fakes'.
 *
 * The fakes keep the semantics of the real adapters where use cases depend on them:
 * - MemoryStore: records are copies (no aliasing), the key set version changes on every write to
 *   a key row except `last_state` (the database's triggers), conditional writes (revoke only when
 *   not revoked, complete only a `generating` row, ...) as in src/store/key-repository.ts, and a
 *   transaction's key/client writes and audit records commit together or not at all.
 * - MemoryBackend: real key pairs from node:crypto, JWS-format signatures, seals kept beside the
 *   key once, and the BACKEND_* errors of the KeyBackend contract (test/contract/
 *   key-backend.contract.ts runs against it in test/unit/lifecycle/memory-backend.contract.test.ts).
 */
import {
  constants,
  createPrivateKey,
  generateKeyPair,
  randomBytes,
  sign as cryptoSign,
  type KeyObject,
  type KeyPairKeyObjectResult,
} from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino, { type Logger } from 'pino';
import type { AuditStore } from '../../src/audit/audit-store';
import type {
  BackendHealth,
  BackendObject,
  GenerateKeyRequest,
  GeneratedKey,
  InventoryEntry,
  KeyBackend,
  KeyInspection,
  PlanKeyRequest,
} from '../../src/backends/key-backend';
import { keyLabel, parseKeyLabel } from '../../src/backends/pkcs11/key-templates';
import { validateConfig } from '../../src/config/validate-config';
import { ClientTrust } from '../../src/lifecycle/client-trust';
import type { LifecycleContext } from '../../src/lifecycle/context';
import { ServiceHealth } from '../../src/lifecycle/service-health';
import { KeyCache } from '../../src/lifecycle/key-cache';
import { RecordedStates } from '../../src/lifecycle/recorded-states';
import { KeyIntegrity } from '../../src/lifecycle/key-integrity';
import { Keywarden } from '../../src/lifecycle/keywarden';
import type {
  AuditLog,
  BackendSource,
  ClientStore,
  KeyStore,
  ScopeLock,
  Store,
  StoreTransaction,
} from '../../src/lifecycle/ports';
import { keySpecFor, RSA_MODULUS_BITS, type SigningAlg } from '../../src/policy/algorithms';
import type { AuditEvent } from '../../src/policy/audit-events';
import { FakeClock } from '../../src/policy/clock';
import { clientVersionsOf, type ClientRecord, type StoredClient } from '../../src/policy/clients';
import { KeywardenError, type ErrorCode } from '../../src/policy/errors';
import type { BackendRef, KeyRecord, PublicJwk } from '../../src/policy/key';
import type { KeywardenConfig } from '../../src/policy/scope';
import { SHORT_POLICY } from './runtime';

// ---------------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------------

/**
 * The audit log as a list of events, in commit order. Events recorded inside a MemoryStore
 * transaction arrive here only when it commits. `failWhen` makes an append throw (inside a
 * transaction: before the commit, so the transaction rolls back).
 */
export class MemoryAuditLog implements AuditLog {
  readonly events: AuditEvent[] = [];
  /** When set and true for an event, appending it throws (as a failing audit store would). */
  failWhen: ((event: AuditEvent) => boolean) | null = null;

  async record(event: AuditEvent): Promise<void> {
    this.check(event);
    this.events.push(structuredClone(event));
  }

  /** Throws if `failWhen` refuses the event (used by transactions at append time). */
  check(event: AuditEvent): void {
    if (this.failWhen?.(event)) {
      throw new Error(`audit append failed (injected) for ${event.type}`);
    }
  }

  /** Commits events appended inside a transaction (already checked). */
  commit(events: readonly AuditEvent[]): void {
    for (const e of events) this.events.push(structuredClone(e));
  }

  types(): string[] {
    return this.events.map((e) => e.type);
  }

  ofType(type: AuditEvent['type']): AuditEvent[] {
    return this.events.filter((e) => e.type === type);
  }
}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

interface KeyEntry {
  record: KeyRecord;
  lastState: string | null;
}

const cloneKey = (k: KeyRecord): KeyRecord => structuredClone(k);
const byActivateAt = (a: KeyRecord, b: KeyRecord) => a.activateAt.getTime() - b.activateAt.getTime();
/** The SQL store's listAll order: scope, then activateAt. */
const sortKeys = (keys: KeyRecord[]): KeyRecord[] =>
  keys.sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : byActivateAt(a, b)));
const cloneClient = (c: ClientRecord): ClientRecord => structuredClone(c);

/** A unique-constraint failure, as the database driver would raise it (not a KeywardenError). */
function uniqueViolation(what: string): Error {
  return new Error(`UNIQUE constraint failed: ${what}`);
}

/** Rows as one reader sees them: the committed rows, overlaid by a transaction's own writes. */
interface RowView {
  getKey(id: string): KeyEntry | undefined;
  allKeys(): KeyEntry[];
  putKey(id: string, entry: KeyEntry | null, versioned: boolean): void;
  getClient(id: string): ClientRecord | undefined;
  allClients(): ClientRecord[];
  putClient(id: string, c: ClientRecord | null): void;
}

/** Direct, unconditional writes to key rows (what an attacker with SQL access does). */
export interface KeyRowTamper {
  /** Changes fields of a row as stored; the key set version changes (the triggers fire). */
  update(id: string, patch: Partial<KeyRecord>): void;
  insert(row: KeyRecord): void;
  remove(id: string): void;
}

/**
 * The store in memory: key rows, client rows, a key set version, and transactions whose writes
 * and audit records commit together. Reads inside a transaction see committed rows and the
 * transaction's own writes; at commit, the rows it wrote replace the committed ones.
 */
export class MemoryStore implements Store {
  private readonly keyRows = new Map<string, KeyEntry>();
  private readonly clientRows = new Map<string, ClientRecord>();
  private versionCounter = 0;
  private versionNonce = '';
  readonly keys: KeyStore;
  readonly clients: ClientStore;
  /** ping() answers not ok while true. */
  down = false;
  /** writable() answers not ok while set (its detail says why). */
  unwritable: string | null = null;
  /** Transactions committed and rolled back, for assertions. */
  readonly stats = { commits: 0, rollbacks: 0 };
  /** Direct row writes that bypass the repository's rules (store-tamper tests). */
  readonly tamper: KeyRowTamper;

  constructor(readonly audit: MemoryAuditLog = new MemoryAuditLog()) {
    const committed = this.committedView();
    this.keys = this.keyStoreOn(committed);
    this.clients = this.clientStoreOn(committed);
    this.tamper = {
      update: (id, patch) => {
        const e = this.keyRows.get(id);
        if (!e) throw new Error(`no key row ${id}`);
        this.keyRows.set(id, { ...e, record: cloneKey({ ...e.record, ...patch }) });
        this.bumpVersion();
      },
      insert: (row) => {
        if (this.keyRows.has(row.id)) throw uniqueViolation('keys.id');
        this.keyRows.set(row.id, { record: cloneKey(row), lastState: null });
        this.bumpVersion();
      },
      remove: (id) => {
        if (this.keyRows.delete(id)) this.bumpVersion();
      },
    };
  }

  /** The key set version as readIfChanged reports it. */
  get version(): string {
    return `${this.versionCounter}:${this.versionNonce}`;
  }

  private bumpVersion(): void {
    this.versionCounter++;
    this.versionNonce = randomBytes(8).toString('hex');
  }

  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const keyWrites = new Map<string, KeyEntry | null>();
    const versioned = new Set<string>();
    const clientWrites = new Map<string, ClientRecord | null>();
    const events: AuditEvent[] = [];
    const view: RowView = {
      getKey: (id) => (keyWrites.has(id) ? (keyWrites.get(id) ?? undefined) : this.keyRows.get(id)),
      allKeys: () => {
        const ids = new Set([...this.keyRows.keys(), ...keyWrites.keys()]);
        return [...ids].map((id) => view.getKey(id)).filter((e): e is KeyEntry => e !== undefined);
      },
      putKey: (id, entry, isVersioned) => {
        keyWrites.set(id, entry);
        if (isVersioned) versioned.add(id);
      },
      getClient: (id) =>
        clientWrites.has(id) ? (clientWrites.get(id) ?? undefined) : this.clientRows.get(id),
      allClients: () => {
        const ids = new Set([...this.clientRows.keys(), ...clientWrites.keys()]);
        return [...ids].map((id) => view.getClient(id)).filter((c): c is ClientRecord => c !== undefined);
      },
      putClient: (id, c) => void clientWrites.set(id, c),
    };
    let open = true;
    const guard = () => {
      if (!open) throw new Error('transaction already finished');
    };
    const tx: StoreTransaction = {
      keys: guarded(this.keyStoreOn(view), guard),
      clients: guarded(this.clientStoreOn(view), guard),
      audit: {
        record: async (event) => {
          guard();
          this.audit.check(event);
          events.push(structuredClone(event));
        },
      },
    };
    let value: T;
    try {
      value = await fn(tx);
    } catch (e) {
      open = false;
      this.stats.rollbacks++;
      throw e;
    }
    open = false;
    for (const [id, entry] of keyWrites) {
      if (entry === null) this.keyRows.delete(id);
      else this.keyRows.set(id, entry);
    }
    for (const [id, c] of clientWrites) {
      if (c === null) this.clientRows.delete(id);
      else this.clientRows.set(id, c);
    }
    if (versioned.size > 0) this.bumpVersion();
    this.audit.commit(events);
    this.stats.commits++;
    return value;
  }

  /** Every committed key row (copies), ordered as listAll orders them. */
  private committedKeys(): KeyRecord[] {
    return sortKeys([...this.keyRows.values()].map((e) => cloneKey(e.record)));
  }

  async ping(): Promise<{ ok: boolean; detail: string }> {
    return this.down
      ? { ok: false, detail: 'memory store is down (injected)' }
      : { ok: true, detail: 'memory' };
  }

  async writable(): Promise<{ ok: boolean; detail: string }> {
    if (this.down) return { ok: false, detail: 'memory store is down (injected)' };
    return this.unwritable === null
      ? { ok: true, detail: 'memory' }
      : { ok: false, detail: `the store cannot be written: ${this.unwritable}` };
  }

  /** Reads and writes straight on the committed rows: each write commits on its own. */
  private committedView(): RowView {
    return {
      getKey: (id) => this.keyRows.get(id),
      allKeys: () => [...this.keyRows.values()],
      putKey: (id, entry, isVersioned) => {
        if (entry === null) this.keyRows.delete(id);
        else this.keyRows.set(id, entry);
        if (isVersioned) this.bumpVersion();
      },
      getClient: (id) => this.clientRows.get(id),
      allClients: () => [...this.clientRows.values()],
      putClient: (id, c) => {
        if (c === null) this.clientRows.delete(id);
        else this.clientRows.set(id, c);
      },
    };
  }

  private keyStoreOn(v: RowView): KeyStore {
    const listAll = () => sortKeys(v.allKeys().map((e) => cloneKey(e.record)));
    const findByKid = (kid: string) => {
      const e = v.allKeys().find((x) => x.record.kid === kid);
      return e ? cloneKey(e.record) : null;
    };
    const kidTaken = (kid: string | null, exceptId: string) =>
      kid !== null && v.allKeys().some((e) => e.record.kid === kid && e.record.id !== exceptId);
    return {
      listByScope: async (scope) =>
        v
          .allKeys()
          .filter((e) => e.record.scope === scope)
          .map((e) => cloneKey(e.record))
          .sort(byActivateAt),
      listAll: async () => listAll(),
      findById: async (id) => {
        const e = v.getKey(id);
        return e ? cloneKey(e.record) : null;
      },
      findByKid: async (kid) => findByKid(kid),
      findByKidOrPrefix: async (kidOrPrefix) => {
        const exact = findByKid(kidOrPrefix);
        if (exact || kidOrPrefix.length < 8 || !/^[A-Za-z0-9_-]+$/.test(kidOrPrefix)) return exact;
        const rows = v
          .allKeys()
          .filter((e) => e.record.kid !== null && e.record.kid.startsWith(kidOrPrefix))
          .slice(0, 2);
        if (rows.length > 1) {
          throw new KeywardenError(
            'REQUEST_INVALID',
            `kid prefix "${kidOrPrefix}" matches more than one key`,
          );
        }
        return rows[0] ? cloneKey(rows[0].record) : null;
      },
      lastStates: async (scope) =>
        new Map(
          v
            .allKeys()
            .filter((e) => e.record.scope === scope)
            .map((e) => [e.record.id, e.lastState]),
        ),
      allLastStates: async () => new Map(v.allKeys().map((e) => [e.record.id, e.lastState])),
      // Like the SQL store, always on committed rows (its own read transaction).
      readIfChanged: async (known) => {
        const version = this.version;
        if (version === known) return { version, keys: null };
        return { version, keys: this.committedKeys() };
      },
      // No change log: any change reads every row (the SQL store's fallback path).
      readChangesSince: async (known) => {
        const version = this.version;
        if (version === known) return { version, kind: 'unchanged' as const };
        return { version, kind: 'all' as const, keys: this.committedKeys() };
      },
      insertGenerating: async (key) => {
        if (v.getKey(key.id)) throw uniqueViolation('keys.id');
        if (kidTaken(key.kid, key.id)) throw uniqueViolation('keys.kid');
        v.putKey(key.id, { record: cloneKey(key), lastState: null }, true);
      },
      completeGenerating: async (id, fields) => {
        const e = v.getKey(id);
        if (!e || e.record.status !== 'generating') {
          throw new KeywardenError('STORE_ERROR', `key row ${id} is not generating`);
        }
        if (kidTaken(fields.kid, id)) throw uniqueViolation('keys.kid');
        const record = cloneKey({
          ...e.record,
          kid: fields.kid,
          publicJwk: fields.publicJwk,
          backendRef: fields.backendRef,
          status: 'ready',
        });
        v.putKey(id, { ...e, record }, true);
      },
      deleteGenerating: async (id) => {
        const e = v.getKey(id);
        if (e && e.record.status === 'generating') v.putKey(id, null, true);
      },
      revoke: async (id, at, reason) => {
        const e = v.getKey(id);
        if (!e || e.record.revokedAt !== null) return false;
        v.putKey(id, { ...e, record: { ...e.record, revokedAt: new Date(at), revokedReason: reason } }, true);
        return true;
      },
      markDestroyed: async (id, at) => {
        const e = v.getKey(id);
        if (!e || e.record.destroyedAt !== null) return;
        v.putKey(id, { ...e, record: { ...e.record, destroyedAt: new Date(at) } }, true);
      },
      // last_state is not versioned: the triggers ignore it.
      setLastState: async (id, state) => {
        const e = v.getKey(id);
        if (e) v.putKey(id, { ...e, lastState: state }, false);
      },
    };
  }

  private clientStoreOn(v: RowView): ClientStore {
    const scan = (): StoredClient[] =>
      v
        .allClients()
        .map((c) => cloneClient(c))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return {
      insert: async (client) => {
        if (v.getClient(client.id)) throw uniqueViolation('clients.id');
        if (v.allClients().some((c) => c.name === client.name)) throw uniqueViolation('clients.name');
        if (
          client.certSpkiSha256 !== null &&
          v.allClients().some((c) => c.certSpkiSha256 === client.certSpkiSha256)
        ) {
          throw uniqueViolation('clients.cert_spki_sha256');
        }
        v.putClient(client.id, cloneClient(client));
      },
      findById: async (id) => {
        const c = v.getClient(id);
        return c ? cloneClient(c) : null;
      },
      findByName: async (name) => {
        const c = v.allClients().find((x) => x.name === name);
        return c ? cloneClient(c) : null;
      },
      findByCertificate: async (cert) => {
        const c = v.allClients().find((x) => x.certSpkiSha256 === cert);
        return c ? cloneClient(c) : null;
      },
      delete: async (id) => {
        if (!v.getClient(id)) return false;
        v.putClient(id, null);
        return true;
      },
      updateSecret: async (id, expectedSecretHash, change, now) => {
        const c = v.getClient(id);
        if (!c || c.secretHash !== expectedSecretHash) return false;
        v.putClient(id, cloneClient({ ...c, ...change, updatedAt: now }));
        return true;
      },
      replaceSeal: async (id, expected, seal) => {
        const c = v.getClient(id);
        if (!c || c.seal !== expected) return false;
        v.putClient(id, { ...c, seal });
        return true;
      },
      scan: async () => scan(),
      versions: async () => clientVersionsOf(scan()),
    };
  }
}

/** Wraps every method of a port so it refuses to run once its transaction finished. */
function guarded<P extends object>(port: P, guard: () => void): P {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(port)) {
    out[name] = (...args: unknown[]) => {
      guard();
      return (fn as (...a: unknown[]) => unknown)(...args);
    };
  }
  return out as P;
}

// ---------------------------------------------------------------------------------------------
// Scope lock
// ---------------------------------------------------------------------------------------------

/**
 * Per-scope lock within this process, not re-entrant (like the SQLite lease: every tryRun is a
 * new holder). `hold` takes a scope as "another process" would, until the returned release.
 */
export class MemoryScopeLock implements ScopeLock {
  private readonly held = new Set<string>();
  /** tryRun calls per scope, and how many found the lock held. */
  readonly attempts = new Map<string, number>();
  readonly refusals = new Map<string, number>();

  async tryRun<T>(scope: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    this.attempts.set(scope, (this.attempts.get(scope) ?? 0) + 1);
    if (this.held.has(scope)) {
      this.refusals.set(scope, (this.refusals.get(scope) ?? 0) + 1);
      return { ran: false };
    }
    this.held.add(scope);
    try {
      return { ran: true, value: await fn() };
    } finally {
      this.held.delete(scope);
    }
  }

  isHeld(scope: string): boolean {
    return this.held.has(scope);
  }

  /** Holds `scope` until the returned function is called (another process reconciling it). */
  hold(scope: string): () => void {
    if (this.held.has(scope)) throw new Error(`scope ${scope} is already held`);
    this.held.add(scope);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held.delete(scope);
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Key backend
// ---------------------------------------------------------------------------------------------

const ID_HEX = /^(?:[0-9a-f]{2}){1,64}$/;

interface MemoryKey {
  id: string;
  label: string;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
  seal: Buffer | null;
  notBefore: Date;
  notAfter: Date;
}

/**
 * A key object read back by importObjects. Its private key is parsed on first use: a daemon
 * serving 100,000 scopes signs with few of them, and an HSM holds its private keys outside the
 * process. A class (the getter on its prototype) keeps 100,000 of them out of V8's dictionary
 * mode, which a getter defined on each object costs (~450 bytes a key).
 */
class ImportedMemoryKey implements MemoryKey {
  private parsed: KeyObject | null = null;

  constructor(
    readonly id: string,
    readonly label: string,
    private readonly pem: string,
    readonly publicJwk: PublicJwk,
    public seal: Buffer | null,
    readonly notBefore: Date,
    readonly notAfter: Date,
  ) {}

  get privateKey(): KeyObject {
    return (this.parsed ??= createPrivateKey(this.pem));
  }
}

/** The operations of a KeyBackend that touch the backend (planKey and refIdentity are pure). */
export type BackendOp =
  | 'generate'
  | 'sign'
  | 'publicKey'
  | 'exists'
  | 'destroy'
  | 'list'
  | 'attachSeal'
  | 'inventory'
  | 'inspectKeys'
  | 'health';

const generateKeyPairAsync = promisify(generateKeyPair) as (
  type: string,
  options: Record<string, unknown>,
) => Promise<KeyPairKeyObjectResult>;

function keyPairFor(alg: SigningAlg, rsaBits: number): Promise<KeyPairKeyObjectResult> {
  const spec = keySpecFor(alg);
  switch (spec.kty) {
    case 'EC':
      return generateKeyPairAsync('ec', { namedCurve: spec.crv });
    case 'RSA':
      return generateKeyPairAsync('rsa', { modulusLength: rsaBits, publicExponent: 0x10001 });
    case 'OKP':
      return generateKeyPairAsync('ed25519', {});
  }
}

/** The public members of a key's JWK (never d, p, q, ...). */
function publicJwkOf(key: KeyObject): PublicJwk {
  const jwk = key.export({ format: 'jwk' }) as Record<string, string>;
  switch (jwk.kty) {
    case 'EC':
      return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
    case 'RSA':
      return { kty: 'RSA', n: jwk.n, e: jwk.e };
    case 'OKP':
      return { kty: 'OKP', crv: jwk.crv, x: jwk.x };
    default:
      throw new KeywardenError('BACKEND_ERROR', `unexpected key type ${String(jwk.kty)}`);
  }
}

/** True when a key with this public JWK can sign `alg` (kty and curve fit). */
function fits(jwk: PublicJwk, alg: SigningAlg): boolean {
  const spec = keySpecFor(alg);
  return jwk.kty === spec.kty && (spec.kty === 'RSA' || jwk.crv === spec.crv);
}

const wholeSeconds = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000);

/**
 * A KeyBackend in memory, faithful to the contract (src/backends/key-backend.ts): real key pairs
 * per alg from node:crypto, JWS signatures (ECDSA raw r||s), public JWKs with public members
 * only, a seal per key kept once, validity recorded to the second (as Key Vault does), and
 * KeywardenError BACKEND_* codes. Keys are addressed like PKCS#11: `{ id: <hex>, label }`.
 *
 * Switches for tests: `down` (every operation throws BACKEND_UNAVAILABLE, health is not ok),
 * `failNext(op)` (the next call of `op` throws), and `calls` (operations counted).
 */
export class MemoryBackend implements KeyBackend {
  readonly type: string = 'memory';
  private readonly objects = new Map<string, MemoryKey>();
  private readonly failures = new Map<BackendOp, Error[]>();
  /** Every operation throws BACKEND_UNAVAILABLE while true. */
  down = false;
  /** Calls per operation (counted also when they fail). */
  readonly calls: Record<BackendOp, number> = {
    generate: 0,
    sign: 0,
    publicKey: 0,
    exists: 0,
    destroy: 0,
    list: 0,
    attachSeal: 0,
    inventory: 0,
    inspectKeys: 0,
    health: 0,
  };
  closed = false;

  constructor(readonly name: string = 'hsm') {}

  /** Makes the next call of `op` throw `error` (default: BACKEND_UNAVAILABLE). Queues. */
  failNext(op: BackendOp, error: Error = unavailable(`${op} failed (injected)`)): void {
    this.failures.set(op, [...(this.failures.get(op) ?? []), error]);
  }

  /** How many key objects the backend holds. */
  get size(): number {
    return this.objects.size;
  }

  /**
   * Every key object as JSON (private keys as PKCS#8 PEM), for a benchmark that makes keys in one
   * process and serves them from another (bench/lib/memory-backend-preload.ts). Test code only:
   * a real backend never lets a private key out.
   */
  exportObjects(): string {
    return JSON.stringify(
      [...this.objects.values()].map((k) => ({
        ...k,
        privateKey: k.privateKey.export({ format: 'pem', type: 'pkcs8' }),
        seal: k.seal?.toString('base64') ?? null,
      })),
    );
  }

  /** Adds the key objects `exportObjects` wrote. */
  importObjects(json: string): void {
    const entries = JSON.parse(json) as (Omit<MemoryKey, 'privateKey' | 'seal'> & {
      privateKey: string;
      seal: string | null;
    })[];
    for (const e of entries) {
      const key = new ImportedMemoryKey(
        e.id,
        e.label,
        e.privateKey,
        e.publicJwk,
        e.seal === null ? null : Buffer.from(e.seal, 'base64'),
        new Date(e.notBefore),
        new Date(e.notAfter),
      );
      this.objects.set(e.id, key);
    }
  }

  private enter(op: BackendOp): void {
    this.calls[op]++;
    const queued = this.failures.get(op);
    const injected = queued?.shift();
    if (queued && queued.length === 0) this.failures.delete(op);
    if (injected) throw injected;
    if (this.down) throw unavailable(`memory backend ${this.name} is down`);
    if (this.closed) throw unavailable(`memory backend ${this.name} is closed`);
  }

  planKey(request: PlanKeyRequest): BackendRef {
    if (!/^[^:\s]+$/.test(request.scope) || request.keyId.length === 0) {
      throw new KeywardenError('INTERNAL', `invalid scope/keyId for a key label: '${request.scope}'`);
    }
    return {
      backend: this.name,
      ref: { id: randomBytes(16).toString('hex'), label: keyLabel(request.scope, request.keyId) },
    };
  }

  refIdentity(ref: BackendRef): string {
    return this.address(ref).id;
  }

  private address(ref: BackendRef): { id: string; label: string } {
    const { id, label } = ref.ref;
    if (ref.backend !== this.name) {
      throw new KeywardenError(
        'BACKEND_ERROR',
        `key ref for backend '${ref.backend}' given to backend '${this.name}'`,
      );
    }
    if (typeof id !== 'string' || !ID_HEX.test(id)) {
      throw new KeywardenError('BACKEND_ERROR', `key ref has no valid hex id: '${String(id)}'`);
    }
    return { id, label: typeof label === 'string' ? label : `id ${id}` };
  }

  private find(ref: BackendRef): MemoryKey {
    const a = this.address(ref);
    const k = this.objects.get(a.id);
    if (!k) throw new KeywardenError('BACKEND_OBJECT_NOT_FOUND', `no key with id ${a.id} (${a.label})`);
    return k;
  }

  async generate(ref: BackendRef, request: GenerateKeyRequest): Promise<GeneratedKey> {
    this.enter('generate');
    const a = this.address(ref);
    if (a.label !== keyLabel(request.scope, request.keyId)) {
      throw new KeywardenError(
        'INTERNAL',
        `ref label '${a.label}' does not match scope/keyId of the request`,
      );
    }
    if (Number.isNaN(request.notBefore.getTime()) || Number.isNaN(request.notAfter.getTime())) {
      throw new KeywardenError('INTERNAL', 'generate: notBefore/notAfter must be valid dates');
    }
    const rsaBits = request.rsaBits ?? 2048;
    if (!(RSA_MODULUS_BITS as readonly number[]).includes(rsaBits)) {
      throw new KeywardenError('BACKEND_MECHANISM_UNSUPPORTED', `RSA modulus of ${String(rsaBits)} bits`);
    }
    if (this.objects.has(a.id)) {
      throw new KeywardenError('BACKEND_OBJECT_EXISTS', `an object with id ${a.id} exists`);
    }
    const pair = await keyPairFor(request.alg, rsaBits);
    // Checked again after the await: a concurrent generate at the same address loses.
    if (this.objects.has(a.id)) {
      throw new KeywardenError('BACKEND_OBJECT_EXISTS', `an object with id ${a.id} exists`);
    }
    const publicJwk = publicJwkOf(pair.publicKey);
    this.objects.set(a.id, {
      id: a.id,
      label: a.label,
      privateKey: pair.privateKey,
      publicJwk,
      seal: null,
      notBefore: new Date(request.notBefore),
      notAfter: new Date(request.notAfter),
    });
    return { ref: structuredClone(ref), publicJwk: { ...publicJwk } };
  }

  async sign(ref: BackendRef, alg: SigningAlg, signingInput: Uint8Array): Promise<Uint8Array> {
    this.enter('sign');
    const k = this.find(ref);
    if (!fits(k.publicJwk, alg)) {
      throw new KeywardenError(
        'BACKEND_MECHANISM_UNSUPPORTED',
        `key ${k.label} (${k.publicJwk.kty}) cannot sign ${alg}`,
      );
    }
    const data = Buffer.from(signingInput);
    let sig: Buffer;
    switch (alg) {
      case 'ES256':
        sig = cryptoSign('sha256', data, { key: k.privateKey, dsaEncoding: 'ieee-p1363' });
        break;
      case 'ES384':
        sig = cryptoSign('sha384', data, { key: k.privateKey, dsaEncoding: 'ieee-p1363' });
        break;
      case 'RS256':
        sig = cryptoSign('sha256', data, k.privateKey);
        break;
      case 'PS256':
        sig = cryptoSign('sha256', data, {
          key: k.privateKey,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 32,
        });
        break;
      case 'EdDSA':
        sig = cryptoSign(null, data, k.privateKey);
        break;
    }
    return new Uint8Array(sig);
  }

  async publicKey(ref: BackendRef, alg: SigningAlg): Promise<PublicJwk> {
    this.enter('publicKey');
    const k = this.find(ref);
    if (!fits(k.publicJwk, alg)) {
      throw new KeywardenError('BACKEND_MECHANISM_UNSUPPORTED', `key ${k.label} is not a ${alg} key`);
    }
    return { ...k.publicJwk };
  }

  async exists(ref: BackendRef): Promise<boolean> {
    this.enter('exists');
    return this.objects.has(this.address(ref).id);
  }

  async destroy(ref: BackendRef, owner?: string): Promise<void> {
    this.enter('destroy');
    const id = this.address(ref).id;
    const keyId = parseKeyLabel(this.objects.get(id)?.label ?? '').keyId;
    // A key labelled for another row is not `owner`'s to destroy.
    if (owner !== undefined && keyId !== null && keyId !== owner) return;
    // The seal goes with the key: it is stored on the same entry.
    this.objects.delete(id);
  }

  async list(): Promise<BackendObject[]> {
    this.enter('list');
    const out: BackendObject[] = [];
    for (const k of this.objects.values()) {
      const ref = { backend: this.name, ref: { id: k.id, label: k.label } };
      const base = { label: k.label, ...parseKeyLabel(k.label) };
      out.push({
        ...base,
        ref,
        kind: 'private',
        attributes: { sensitive: true, extractable: false, alwaysSensitive: true, neverExtractable: true },
      });
      out.push({ ...base, ref: structuredClone(ref), kind: 'public', attributes: {} });
    }
    return out;
  }

  async attachSeal(ref: BackendRef, seal: Uint8Array): Promise<void> {
    this.enter('attachSeal');
    const k = this.find(ref);
    if (k.seal !== null)
      throw new KeywardenError('BACKEND_OBJECT_EXISTS', `key ${k.label} is sealed already`);
    k.seal = Buffer.from(seal);
  }

  async inventory(): Promise<InventoryEntry[]> {
    this.enter('inventory');
    return [...this.objects.values()].map((k) => ({
      identity: k.id,
      ref: { backend: this.name, ref: { id: k.id, label: k.label } },
      label: k.label,
      ...parseKeyLabel(k.label),
      sealed: k.seal !== null,
    }));
  }

  async inspectKeys(keys: readonly { ref: BackendRef; alg: SigningAlg }[]): Promise<KeyInspection[]> {
    this.enter('inspectKeys');
    return keys.map(({ ref, alg }): KeyInspection => {
      let id: string;
      try {
        id = this.address(ref).id;
      } catch (e) {
        return { status: 'unreadable', problem: (e as Error).message };
      }
      const k = this.objects.get(id);
      if (!k) return { status: 'missing' };
      if (!fits(k.publicJwk, alg)) {
        return { status: 'unreadable', problem: `key ${k.label} (${k.publicJwk.kty}) is not a ${alg} key` };
      }
      return {
        status: 'found',
        facts: {
          publicJwk: { ...k.publicJwk },
          ...parseKeyLabel(k.label),
          seal: k.seal === null ? null : Buffer.from(k.seal),
          validity: {
            notBefore: wholeSeconds(k.notBefore),
            notAfter: wholeSeconds(k.notAfter),
            precision: 'second',
          },
        },
      };
    });
  }

  async health(): Promise<BackendHealth> {
    try {
      this.enter('health');
    } catch (e) {
      return { ok: false, detail: (e as Error).message };
    }
    return { ok: true, detail: `memory backend ${this.name}: ${this.objects.size} key(s)` };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function unavailable(message: string): KeywardenError {
  return new KeywardenError('BACKEND_UNAVAILABLE', message);
}

/** True when `e` is a KeywardenError with `code` (for assert.rejects predicates). */
export function isCode(code: ErrorCode): (e: unknown) => boolean {
  return (e) => e instanceof KeywardenError && e.code === code;
}

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/** A scope for fake runtimes (the shape of test/helpers/runtime.ts's TestScope). */
export interface FakeScope {
  name: string;
  issuer?: string;
  audiences?: string[];
  alg?: SigningAlg;
  rsaBits?: 2048 | 3072;
  policy?: Partial<Record<keyof typeof SHORT_POLICY, string>>;
}

/**
 * A config document for the scopes on one backend `hsm`. It names a PKCS#11 module that does not
 * exist: validation only resolves paths, and the fake runtime never opens it (its BackendSource
 * hands out a MemoryBackend instead).
 */
export function fakeConfigDocument(scopes: FakeScope[]): Record<string, unknown> {
  const dir = join(tmpdir(), 'keywarden-fake-never-created');
  return {
    dataDir: dir,
    logLevel: 'silent',
    store: { url: 'sqlite::memory:' },
    backends: {
      hsm: {
        type: 'pkcs11',
        module: '/nonexistent/keywarden-fake-pkcs11.so',
        tokenLabel: 'memory',
        pin: { file: join(dir, 'user-pin') },
      },
    },
    scopes: scopes.map((s) => ({
      name: s.name,
      issuer: s.issuer ?? `https://issuer.test/${s.name}`,
      audiences: s.audiences ?? [`${s.name}-api`],
      alg: s.alg ?? 'ES256',
      ...(s.rsaBits ? { rsaBits: s.rsaBits } : {}),
      backend: 'hsm',
      schedule: '* * * * *',
      production: false,
      policy: { ...SHORT_POLICY, ...s.policy },
    })),
  };
}

export interface FakeRuntimeOptions {
  scopes?: FakeScope[];
  /** Default: a FakeClock at 2026-01-01T00:00:00Z. */
  clock?: FakeClock;
  /** Default: silent. */
  log?: Logger;
  /** Record integrity findings in the audit log (as the daemon's scheduling process does). */
  auditIntegrity?: boolean;
  /** Default: one MemoryBackend named `hsm`. */
  backend?: MemoryBackend;
}

export interface FakeRuntime {
  ctx: LifecycleContext;
  kw: Keywarden;
  config: KeywardenConfig;
  clock: FakeClock;
  store: MemoryStore;
  audit: MemoryAuditLog;
  lock: MemoryScopeLock;
  backend: MemoryBackend;
  /** How often the BackendSource was asked for a backend, by name. */
  backendOpens: Map<string, number>;
  close(): Promise<void>;
}

/**
 * A LifecycleContext and Keywarden facade over the fakes, wired as openRuntime wires the real
 * adapters: the real config validation, KeyCache, KeyIntegrity and ClientTrust; loads keys once.
 */
export async function fakeRuntime(opts: FakeRuntimeOptions = {}): Promise<FakeRuntime> {
  const config = validateConfig(fakeConfigDocument(opts.scopes ?? [{ name: 'consumer' }]), {
    source: '<fake>',
    baseDir: tmpdir(),
  });
  const clock = opts.clock ?? new FakeClock();
  const log = opts.log ?? pino({ level: 'silent' });
  const audit = new MemoryAuditLog();
  const store = new MemoryStore(audit);
  const lock = new MemoryScopeLock();
  const memory = opts.backend ?? new MemoryBackend('hsm');
  const backendOpens = new Map<string, number>();
  const backend: BackendSource = async (name) => {
    backendOpens.set(name, (backendOpens.get(name) ?? 0) + 1);
    if (!config.backends[name]) throw new KeywardenError('CONFIG_INVALID', `unknown backend ${name}`);
    if (name !== memory.name) throw new KeywardenError('BACKEND_ERROR', `no fake for backend ${name}`);
    return memory;
  };
  const keys = store.keys;
  const integrity = new KeyIntegrity({
    config,
    clock,
    log,
    backend,
    rowExists: async (id) => (await keys.findById(id)) !== null,
    audit: opts.auditIntegrity ? audit : null,
  });
  const cache = new KeyCache(config, keys, clock, log, integrity);
  const clientTrust = new ClientTrust({
    config,
    clock,
    log,
    keys,
    backend,
    audit: opts.auditIntegrity ? audit : null,
  });
  const ctx: LifecycleContext = {
    config,
    clock,
    log,
    store,
    keys,
    lock,
    audit,
    // The audit chain's records (AuditStore) are a TypeORM class with no port yet; the audit
    // use cases (checkpoint, verify, prune, tail) are not run on fakes. Any use fails loudly.
    auditRecords: unwired<AuditStore>('auditRecords'),
    cache,
    recordedStates: new RecordedStates(keys),
    clientTrust,
    backend,
    health: new ServiceHealth(clock),
  };
  await cache.refresh(true);
  return {
    ctx,
    kw: new Keywarden(ctx),
    config,
    clock,
    store,
    audit,
    lock,
    backend: memory,
    backendOpens,
    async close() {
      cache.stop();
      await memory.close();
    },
  };
}

/** A stand-in whose every property access throws: for context members a fake runtime lacks. */
function unwired<T>(what: string): T {
  return new Proxy(
    {},
    {
      get(_target, prop) {
        if (prop === 'then' || typeof prop === 'symbol') return undefined;
        throw new Error(`${what}.${String(prop)}: not wired in fakeRuntime (test/helpers/fakes.ts)`);
      },
    },
  ) as T;
}

// ---------------------------------------------------------------------------------------------
// Small helpers for tests on a fake runtime
// ---------------------------------------------------------------------------------------------

/** The kids of the scope's JWKS as the runtime serves it now. */
export function jwksKids(rt: Pick<FakeRuntime, 'kw'>, scope: string): string[] {
  return (JSON.parse(rt.kw.jwksDocument(scope)) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
}

/** The scope's ready rows as stored (trusted or not). */
export async function readyKeys(rt: Pick<FakeRuntime, 'store'>, scope: string): Promise<KeyRecord[]> {
  return (await rt.store.keys.listByScope(scope)).filter((k) => k.status === 'ready');
}

const b64json = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/**
 * A token for `scope` signed in the backend with `key`'s object directly, bypassing keywarden's
 * signing rules (a leaked key, or one an attacker tries to re-scope or keep alive).
 */
export async function tokenSignedBy(
  rt: Pick<FakeRuntime, 'backend' | 'clock' | 'config'>,
  key: Pick<KeyRecord, 'alg' | 'kid' | 'backendRef'>,
  scope: string,
): Promise<string> {
  const now = Math.floor(rt.clock.now().getTime() / 1000);
  const s = rt.config.scopes.find((x) => x.name === scope);
  if (!s) throw new Error(`no scope ${scope}`);
  const input = `${b64json({ alg: key.alg, kid: key.kid, typ: 'JWT' })}.${b64json({
    iss: s.issuer,
    aud: s.audiences[0],
    sub: 'mallory',
    iat: now,
    nbf: now,
    exp: now + 60,
    jti: randomBytes(8).toString('hex'),
  })}`;
  const sig = await rt.backend.sign(key.backendRef, key.alg, Buffer.from(input, 'ascii'));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}
