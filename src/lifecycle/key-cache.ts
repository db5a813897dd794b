import { createPublicKey, type KeyObject } from 'node:crypto';
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
  record: KeyRecord;
  publicKey: KeyObject;
}

/** One scope's keys as this process currently knows them. */
export interface ScopeView {
  scope: ScopeConfig;
  keys: CachedKey[];
  /** `keys`' records, kept as an array so signing picks a key without allocating. */
  records: KeyRecord[];
  byKid: Map<string, CachedKey>;
  jwks: BuiltJwks | null;
}

/**
 * This process's view of every scope's keys, reloaded from the store whenever its key set
 * version changes (polled every `server.keyRefreshSeconds`) and, on PostgreSQL, as soon as
 * another process announces a key write (LISTEN keywarden_keys). Every reload passes the rows
 * through the integrity check (key-integrity.ts): only rows their backend vouches for (or rows
 * already dead by their own times) enter a view, so a store write never becomes a signing or
 * validation capability. States are never cached: callers compute them from the timestamps at
 * request time (I2). A revocation reaches it within one poll interval plus one reload at worst,
 * typically milliseconds after the commit on PostgreSQL.
 */
export class KeyCache {
  private views = new Map<string, ScopeView>();
  /** The store's key set version these views were loaded at. */
  private version: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private queued: { force: boolean; promise: Promise<void> } | null = null;
  private feed: KeyChangeFeed | null = null;
  private readonly reloadListeners = new Set<() => void>();
  /** Per scope, rows the last reload read that no view holds (see rowsOutsideView). */
  private outside = new Map<string, number>();

  constructor(
    private readonly config: KeywardenConfig,
    private readonly keys: Pick<KeyStore, 'readIfChanged'>,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** The integrity check every reload runs; its last report feeds readiness and metrics. */
    readonly integrity: KeyIntegrity,
    /** Where other processes' key writes are announced (the composition root builds it). */
    private readonly changeFeed: KeyChangeFeedFactory = () => null,
  ) {}

  /**
   * Loads now if the store changed (or `force`). A reload already running may have read the
   * store before the caller's change, so callers arriving meanwhile share one more reload after
   * it (forced if any of them asked), never just the running one.
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
    const { version, keys: all } = await this.keys.readIfChanged(force ? null : this.version);
    if (all === null) return;
    const { usable } = await this.integrity.check(all);
    const byScope = new Map<string, KeyRecord[]>();
    for (const k of usable) {
      if (k.status !== 'ready' || k.publicJwk === null || k.kid === null) continue;
      let list = byScope.get(k.scope);
      if (!list) byScope.set(k.scope, (list = []));
      list.push(k);
    }
    const views = new Map<string, ScopeView>();
    for (const scope of this.config.scopes) {
      const keys: CachedKey[] = [];
      for (const record of byScope.get(scope.name) ?? []) {
        const previous = this.views.get(scope.name)?.byKid.get(record.kid as string);
        keys.push({ record, publicKey: previous?.publicKey ?? importPublicKey(record) });
      }
      views.set(scope.name, {
        scope,
        keys,
        records: keys.map((k) => k.record),
        byKid: new Map(keys.map((k) => [k.record.kid as string, k])),
        jwks: null,
      });
    }
    this.views = views;
    this.outside = countRowsOutsideViews(all, usable);
    this.version = version;
    for (const listener of this.reloadListeners) {
      try {
        listener();
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'key reload listener failed');
      }
    }
  }

  /**
   * Calls `listener` (synchronously, after the new views are in place) on every reload that read
   * a changed key set; returns the function that stops it. The key-events streams hang on this.
   */
  onReload(listener: () => void): () => void {
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
        // A notification means a row changed: reload even if the version looks the same.
        this.refresh(true)
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
   * How many of the scope's rows the last reload read but keeps in no view: `generating` rows (a
   * generation in progress, or a crash leftover) and usable rows without a public key. Reconcile's
   * in-memory check (reconcile-due.ts) reconciles in full any scope that has one.
   */
  rowsOutsideView(scope: string): number {
    return this.outside.get(scope) ?? 0;
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

/** Per scope: rows not `ready`, and usable ready rows without a public key or kid. */
function countRowsOutsideViews(all: readonly KeyRecord[], usable: readonly KeyRecord[]): Map<string, number> {
  const counts = new Map<string, number>();
  const add = (scope: string) => counts.set(scope, (counts.get(scope) ?? 0) + 1);
  for (const k of all) if (k.status !== 'ready') add(k.scope);
  for (const k of usable) if (k.status === 'ready' && (k.publicJwk === null || k.kid === null)) add(k.scope);
  return counts;
}

function importPublicKey(record: KeyRecord): KeyObject {
  return createPublicKey({
    key: record.publicJwk as unknown as import('node:crypto').JsonWebKey,
    format: 'jwk',
  });
}
