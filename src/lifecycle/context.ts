import type { Logger } from 'pino';
import type { AuditStore } from '../audit/audit-store';
import type { Clock } from '../policy/clock';
import { KeywardenError } from '../policy/errors';
import type { KeywardenConfig, ScopeConfig } from '../policy/scope';
import type { ClientTrust } from './client-trust';
import type { KeyCache } from './key-cache';
import type { RecordedStates } from './recorded-states';
import type { ServiceHealth } from './service-health';
import type { AuditLog, BackendSource, KeyStore, ScopeLock, Store } from './ports';

/**
 * What use cases work with, wired once by the composition root (src/main.ts): small interfaces
 * (src/lifecycle/ports.ts) and this process's caches, never a database handle. Adapters do not
 * see it: they go through the facade (src/lifecycle/index.ts).
 */
export interface LifecycleContext {
  config: KeywardenConfig;
  clock: Clock;
  log: Logger;
  /** Key and client rows, and transactions that commit them with their audit records. */
  store: Store;
  /** The same as `store.keys` (the port most use cases need). */
  keys: KeyStore;
  lock: ScopeLock;
  /** The audit log, append-only. */
  audit: AuditLog;
  /** The audit chain's records, for the audit use cases (checkpoint, verify, prune, tail). */
  auditRecords: AuditStore;
  /** This process's view of the keys (refreshed from the store). */
  cache: KeyCache;
  /** The state last recorded per key row, as this process knows it (one per process). */
  recordedStates: RecordedStates;
  /** This process's check of API client rows against the audit key's seals (one per process). */
  clientTrust: ClientTrust;
  /** Opens (once) and returns the named backend. */
  backend: BackendSource;
  /** Failed signatures and key generations not yet followed by a success, per scope (readiness). */
  health: ServiceHealth;
}

/**
 * Scopes by name, per (frozen) config. Every request and every reconcile looks its scope up, so
 * a linear search made each lookup O(scopes): with 10,000 scopes it was 44% of a reconcile pass
 * and tens of microseconds per JWKS request (measured in bench/).
 */
/** How many configured scope names an unknown-scope error lists. */
const SCOPES_NAMED = 10;

const scopesByName = new WeakMap<readonly ScopeConfig[], Map<string, ScopeConfig>>();

/** The scope's config, or SCOPE_NOT_FOUND. */
export function requireScope(ctx: Pick<LifecycleContext, 'config'>, name: string): ScopeConfig {
  let byName = scopesByName.get(ctx.config.scopes);
  if (!byName) {
    byName = new Map(ctx.config.scopes.map((s) => [s.name, s]));
    scopesByName.set(ctx.config.scopes, byName);
  }
  const scope = byName.get(name);
  if (!scope) {
    // A few names help an operator's typo; all of them would make every unknown-scope 404 as
    // large as the config (100,000 tenant scopes: megabytes for any caller on the network).
    const all = ctx.config.scopes;
    const shown = all
      .slice(0, SCOPES_NAMED)
      .map((s) => s.name)
      .join(', ');
    const more = all.length > SCOPES_NAMED ? ` and ${all.length - SCOPES_NAMED} more` : '';
    throw new KeywardenError(
      'SCOPE_NOT_FOUND',
      `unknown scope "${name}" (configured: ${shown || 'none'}${more})`,
    );
  }
  return scope;
}
