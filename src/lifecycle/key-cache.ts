import { createPublicKey, type KeyObject } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Clock } from '../policy/clock';
import type { KeyRecord } from '../policy/key';
import type { KeywardenConfig, ScopeConfig } from '../policy/scope';
import type { KeyStore } from './ports';
import { buildJwks, type BuiltJwks } from './build-jwks';
import type { KeyIntegrity } from './key-integrity';

/** Announcements of key writes by other processes (PostgreSQL LISTEN keywarden_keys). */
export interface KeyChangeFeed {
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
}

/**
 * Builds the feed for this cache; null when the store has none. `onChange`: a key write was
 * announced (reload). `onMaybeChange`: the store may have been written (SQLite's files changed):
 * compare the key set version, reload only if it moved.
 */
export type KeyChangeFeedFactory = (onChange: () => void, onMaybeChange: () => void) => KeyChangeFeed | null;

/** A ready key with its public key imported once. */
export interface CachedKey {
  readonly record: KeyRecord;
  readonly publicKey: KeyObject;
}

/**
 * A view's key. Its public key is imported on first use (a verification), not at load: a
 * KeyObject costs about 3 KB of native memory (measured: 288 MiB for 100,000 P-256 keys), and
 * with one scope per tenant most keys are only ever published.
 */
class ViewKey implements CachedKey {
  constructor(
    readonly record: KeyRecord,
    private imported: KeyObject | null,
  ) {}

  get publicKey(): KeyObject {
    return (this.imported ??= importPublicKey(this.record));
  }

  /** The public key if a verification imported it already (a rebuilt view keeps it). */
  get importedKey(): KeyObject | null {
    return this.imported;
  }
}

/** One scope's keys as this process currently knows them. */
export interface ScopeView {
  scope: ScopeConfig;
  keys: CachedKey[];
  /** `keys`' records, kept as an array so signing picks a key without allocating. */
  records: KeyRecord[];
  byKid: KeysByKid;
  jwks: BuiltJwks | null;
}

/**
 * A view's keys by kid. A scope holds one to three keys, so a scan of `keys` answers as fast as a
 * Map, and a Map's table costs ~650 bytes a scope on the heap (65 MiB at 100,000 scopes), which
 * every scavenge of a big heap pays for.
 */
export class KeysByKid {
  constructor(private readonly keys: readonly CachedKey[]) {}

  get(kid: string): CachedKey | undefined {
    for (const k of this.keys) if (k.record.kid === kid) return k;
    return undefined;
  }

  has(kid: string): boolean {
    return this.get(kid) !== undefined;
  }
}

/**
 * Scopes whose views a reload changed: a set, or null when every scope's view was rebuilt (a full
 * reload).
 */
export type ChangedScopes = ReadonlySet<string> | null;

/**
 * How often a full reload runs even when the store's change log could tell what changed: it is
 * the pass that lists each backend's inventory (an object destroyed outside keywarden, a row
 * deleted and its object left) and re-reads every row. docs/security-model.md states this bound.
 */
export const FULL_RELOAD_INTERVAL_SECONDS = 600;

/**
 * This process's view of every scope's keys, reloaded from the store whenever its key set
 * version changes (polled every `server.keyRefreshSeconds`) and, on PostgreSQL, as soon as
 * another process announces a key write (LISTEN keywarden_keys). Every reload passes the rows
 * it read through the integrity check (key-integrity.ts): only rows their backend vouches for (or
 * rows already dead by their own times) enter a view, so a store write never becomes a signing or
 * validation capability. States are never cached: callers compute them from the timestamps at
 * request time (I2). A revocation reaches it within one poll interval plus one reload at worst,
 * typically milliseconds after the commit on PostgreSQL.
 *
 * A reload reads only the rows changed since the version it holds, when the store's change log
 * vouches for the whole stretch (src/store/key-changes.ts), checks those rows and rebuilds only
 * their scopes' views. It reads and checks everything (a full reload) at the first load, when
 * forced, when the log cannot tell, and at least every FULL_RELOAD_INTERVAL_SECONDS.
 */
export class KeyCache {
  private views = new Map<string, ScopeView>();
  /** The scope of each key in a view (which view a changed row leaves). */
  private readonly scopeOfKey = new Map<string, string>();
  private readonly scopeByName: Map<string, ScopeConfig>;
  /** The store's key set version these views were loaded at. */
  private version: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private queued: { force: boolean; promise: Promise<void> } | null = null;
  private feed: KeyChangeFeed | null = null;
  private readonly reloadListeners = new Set<(changed: ChangedScopes) => void>();
  /** Rows the reloads read that no view holds, by id, with their scope (see rowsOutsideView). */
  private readonly outside = new Map<string, string>();
  /** The same, counted per scope. */
  private readonly outsideCount = new Map<string, number>();

  constructor(
    private readonly config: KeywardenConfig,
    private readonly keys: Pick<KeyStore, 'readChangesSince'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** The integrity check every reload runs; its last report feeds readiness and metrics. */
    readonly integrity: KeyIntegrity,
    /** Where other processes' key writes are announced (the composition root builds it). */
    private readonly changeFeed: KeyChangeFeedFactory = () => null,
  ) {
    this.scopeByName = new Map(config.scopes.map((s) => [s.name, s]));
  }

  /**
   * Loads what changed in the store since this process's version, or everything when `force`
   * (a full reload: every row, each backend's inventory). A reload already running may have read
   * the store before the caller's change, so callers arriving meanwhile share one more reload
   * after it (forced if any of them asked), never just the running one.
   */
  refresh(force = false): Promise<void> {
    if (!this.inFlight) return this.launch(force);
    if (this.queued) {
      this.queued.force ||= force;
      return this.queued.promise;
    }
    const queued: { force: boolean; promise: Promise<void> } = { force, promise: Promise.resolve() };
    queued.promise = this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.launch(queued.force);
      });
    this.queued = queued;
    return queued.promise;
  }

  private launch(force: boolean): Promise<void> {
    const p: Promise<void> = this.doRefresh(force).finally(() => {
      if (this.inFlight === p) this.inFlight = null;
    });
    this.inFlight = p;
    return p;
  }

  private async doRefresh(force: boolean): Promise<void> {
    // On a turn of its own: a reload reads the store and the backend synchronously (SQLite,
    // PKCS#11 attribute reads), and its callers usually just finished synchronous work of their own.
    await nextTurn();
    const lastFull = this.integrity.lastFullCheckAt;
    const fullDue =
      lastFull === null ||
      this.clock.now().getTime() - lastFull.getTime() >= FULL_RELOAD_INTERVAL_SECONDS * 1000;
    const read = await this.keys.readChangesSince(force || fullDue ? null : this.version);
    if (read.kind === 'unchanged') return;
    let changed: ChangedScopes;
    if (read.kind === 'all') {
      const { usable } = await this.integrity.check(read.keys);
      this.rebuildAll(usable);
      this.outside.clear();
      this.outsideCount.clear();
      this.noteOutside(read.keys, usable);
      changed = null;
    } else {
      const { usable } = await this.integrity.checkChanged(read.ids, read.keys);
      changed = this.rebuildChanged(read.ids, usable);
      for (const id of read.ids) this.forgetOutside(id);
      this.noteOutside(read.keys, usable);
    }
    this.version = read.version;
    for (const listener of this.reloadListeners) {
      try {
        listener(changed);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'key reload listener failed');
      }
    }
  }

  /** Every scope's view from the rows a full pass found usable. */
  private rebuildAll(usable: readonly KeyRecord[]): void {
    const byScope = new Map<string, KeyRecord[]>();
    for (const k of usable) {
      if (!inView(k)) continue;
      let list = byScope.get(k.scope);
      if (!list) byScope.set(k.scope, (list = []));
      list.push(k);
    }
    const views = new Map<string, ScopeView>();
    this.scopeOfKey.clear();
    for (const scope of this.config.scopes) {
      const previous = this.views.get(scope.name);
      const records = byScope.get(scope.name) ?? [];
      views.set(scope.name, makeView(scope, records, previous));
      for (const r of records) this.scopeOfKey.set(r.id, scope.name);
    }
    this.views = views;
  }

  /**
   * Rebuilds the views of the scopes the changed rows (`ids`) left or entered; `usable` holds the
   * changed rows the integrity check passed. Returns those scopes.
   */
  private rebuildChanged(ids: readonly string[], usable: readonly KeyRecord[]): Set<string> {
    const changed = new Set<string>();
    const gone = new Set(ids);
    for (const id of ids) {
      const scope = this.scopeOfKey.get(id);
      if (scope !== undefined) changed.add(scope);
      this.scopeOfKey.delete(id);
    }
    const entering = new Map<string, KeyRecord[]>();
    for (const k of usable) {
      if (!inView(k) || !this.scopeByName.has(k.scope)) continue;
      changed.add(k.scope);
      let list = entering.get(k.scope);
      if (!list) entering.set(k.scope, (list = []));
      list.push(k);
    }
    for (const name of changed) {
      const scope = this.scopeByName.get(name) as ScopeConfig;
      const previous = this.views.get(name);
      const records = (previous?.records ?? []).filter((r) => !gone.has(r.id));
      for (const k of entering.get(name) ?? []) {
        records.push(k);
        this.scopeOfKey.set(k.id, name);
      }
      // The order a full reload reads them in (by activation).
      records.sort((a, b) => a.activateAt.getTime() - b.activateAt.getTime());
      this.views.set(name, makeView(scope, records, previous));
    }
    return changed;
  }

  /**
   * Calls `listener` (synchronously, after the new views are in place) on every reload that read
   * a changed key set, with the scopes whose views changed (null: a full reload, any may have);
   * returns the function that stops it. The key-events streams hang on this.
   */
  onReload(listener: (changed: ChangedScopes) => void): () => void {
    this.reloadListeners.add(listener);
    return () => this.reloadListeners.delete(listener);
  }

  /**
   * Starts polling the store and, on PostgreSQL, listening for key writes on a dedicated
   * connection (reconnecting when it drops; the polling is the fallback that keeps the bound).
   * Neither keeps the process alive.
   */
  start(): void {
    if (this.timer) return;
    const ms = this.config.server.keyRefreshSeconds * 1000;
    this.timer = setInterval(() => {
      this.refresh().catch((e) => this.log.error({ err: (e as Error).message }, 'key cache refresh failed'));
    }, ms);
    this.timer.unref();
    this.feed = this.changeFeed(
      () => {
        this.log.debug('key change announced: reloading keys');
        // The version moved with the write announced: the change log says which rows to read.
        this.refresh()
          .then(() => this.log.debug('keys reloaded after announcement'))
          .catch((e) =>
            this.log.error({ err: (e as Error).message }, 'key cache refresh after notification failed'),
          );
      },
      () => {
        this.refresh().catch((e) =>
          this.log.error({ err: (e as Error).message }, 'key cache refresh after a store write failed'),
        );
      },
    );
    void this.feed?.start();
  }

  /** The change feed while started, when the store has one (diagnostics and tests). */
  get activeFeed(): KeyChangeFeed | null {
    return this.feed;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    void this.feed?.stop();
    this.feed = null;
  }

  /** The scope's view, or undefined for an unknown scope. */
  view(scope: string): ScopeView | undefined {
    return this.views.get(scope);
  }

  /**
   * Remembers the rows of `read` no view holds: not `ready` (a generation in progress, or a crash
   * leftover), and usable ready rows without a public key or kid.
   */
  private noteOutside(read: readonly KeyRecord[], usable: readonly KeyRecord[]): void {
    const note = (k: KeyRecord) => {
      if (this.outside.has(k.id)) return;
      this.outside.set(k.id, k.scope);
      this.outsideCount.set(k.scope, (this.outsideCount.get(k.scope) ?? 0) + 1);
    };
    for (const k of read) if (k.status !== 'ready') note(k);
    for (const k of usable) if (k.status === 'ready' && !inView(k)) note(k);
  }

  private forgetOutside(id: string): void {
    const scope = this.outside.get(id);
    if (scope === undefined) return;
    this.outside.delete(id);
    const n = (this.outsideCount.get(scope) ?? 1) - 1;
    if (n > 0) this.outsideCount.set(scope, n);
    else this.outsideCount.delete(scope);
  }

  /**
   * How many of the scope's rows the reloads read but keep in no view: `generating` rows (a
   * generation in progress, or a crash leftover) and usable rows without a public key. Reconcile's
   * in-memory check (reconcile-due.ts) reconciles in full any scope that has one.
   */
  rowsOutsideView(scope: string): number {
    return this.outsideCount.get(scope) ?? 0;
  }

  /** The scope's JWKS at `now`, rebuilt only when a key in it changes state or keys reload. */
  jwks(view: ScopeView, now = this.clock.now()): BuiltJwks {
    const cached = view.jwks;
    // getTime(), not `now < date`: a relational Date comparison converts both through
    // ToPrimitive on every JWKS request.
    if (cached && (cached.nextChangeAt === null || now.getTime() < cached.nextChangeAt.getTime()))
      return cached;
    view.jwks = buildJwks(view.scope, view.records, now);
    return view.jwks;
  }
}

/** Rows a view holds: ready, with their public key. */
function inView(k: KeyRecord): boolean {
  return k.status === 'ready' && k.publicJwk !== null && k.kid !== null;
}

/** A scope's view of `records`, reusing the public keys `previous` imported. */
function makeView(scope: ScopeConfig, records: KeyRecord[], previous: ScopeView | undefined): ScopeView {
  const keys: CachedKey[] = records.map((record) => {
    const before = previous?.byKid.get(record.kid as string);
    return new ViewKey(record, before instanceof ViewKey ? before.importedKey : null);
  });
  return {
    scope,
    keys,
    records: keys.map((k) => k.record),
    byKid: new KeysByKid(keys),
    jwks: null,
  };
}

function importPublicKey(record: KeyRecord): KeyObject {
  return createPublicKey({
    key: record.publicJwk as unknown as import('node:crypto').JsonWebKey,
    format: 'jwk',
  });
}
