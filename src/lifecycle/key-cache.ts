import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../policy/clock';
import type { KeyRecord } from '../policy/key';
import type { KeywardenConfig, ScopeConfig } from '../policy/scope';
import type { KeyChangeMarker, KeyRepository } from '../store/key-repository';
import { buildJwks, type BuiltJwks } from './build-jwks';

/** A ready key with its public key imported once. */
export interface CachedKey {
  record: KeyRecord;
  publicKey: KeyObject;
}

/** One scope's keys as this process currently knows them. */
export interface ScopeView {
  scope: ScopeConfig;
  keys: CachedKey[];
  byKid: Map<string, CachedKey>;
  jwks: BuiltJwks | null;
}

/**
 * This process's view of every scope's keys, reloaded from the store whenever its change
 * marker moves (polled every `server.keyRefreshSeconds`). States are never cached: callers
 * compute them from the timestamps at request time (I2). The cache only saves the store
 * round trip and the key import, and a revocation reaches it within one poll interval.
 */
export class KeyCache {
  private views = new Map<string, ScopeView>();
  private marker: KeyChangeMarker | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;

  constructor(
    private readonly config: KeywardenConfig,
    private readonly keys: KeyRepository,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Loads now if the store changed (or `force`). Concurrent callers share one reload. */
  refresh(force = false): Promise<void> {
    this.refreshing ??= this.doRefresh(force).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(force: boolean): Promise<void> {
    const marker = await this.keys.changeMarker();
    if (
      !force &&
      this.marker &&
      marker.count === this.marker.count &&
      marker.lastUpdatedMs === this.marker.lastUpdatedMs
    ) {
      return;
    }
    const all = await this.keys.listAll();
    const byScope = new Map<string, KeyRecord[]>();
    for (const k of all) {
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
        byKid: new Map(keys.map((k) => [k.record.kid as string, k])),
        jwks: null,
      });
    }
    this.views = views;
    this.marker = marker;
  }

  /** Starts polling the store. The timer does not keep the process alive. */
  start(): void {
    if (this.timer) return;
    const ms = this.config.server.keyRefreshSeconds * 1000;
    this.timer = setInterval(() => {
      this.refresh().catch((e) => this.log.error({ err: (e as Error).message }, 'key cache refresh failed'));
    }, ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The scope's view, or undefined for an unknown scope. */
  view(scope: string): ScopeView | undefined {
    return this.views.get(scope);
  }

  /** The scope's JWKS at `now`, rebuilt only when a key in it changes state or keys reload. */
  jwks(view: ScopeView, now = this.clock.now()): BuiltJwks {
    const cached = view.jwks;
    if (cached && (cached.nextChangeAt === null || now < cached.nextChangeAt)) return cached;
    view.jwks = buildJwks(
      view.scope,
      view.keys.map((k) => k.record),
      now,
    );
    return view.jwks;
  }
}

function importPublicKey(record: KeyRecord): KeyObject {
  return createPublicKey({
    key: record.publicJwk as unknown as import('node:crypto').JsonWebKey,
    format: 'jwk',
  });
}
