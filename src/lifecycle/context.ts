import type { Logger } from 'pino';
import type { DataSource } from 'typeorm';
import type { KeyBackend } from '../backends/key-backend';
import type { Clock } from '../policy/clock';
import { KeywardenError } from '../policy/errors';
import type { KeywardenConfig, ScopeConfig } from '../policy/scope';
import type { KeyRepository } from '../store/key-repository';
import type { ScopeLock } from '../store/scope-lock';
import type { AuditSink } from './audit-sink';
import type { ClientTrust } from './client-trust';
import type { KeyCache } from './key-cache';

/** Everything a use case needs, wired once by the composition root (src/main.ts). */
export interface LifecycleContext {
  config: KeywardenConfig;
  clock: Clock;
  log: Logger;
  ds: DataSource;
  keys: KeyRepository;
  lock: ScopeLock;
  audit: AuditSink;
  /** This process's view of the keys (refreshed from the store). */
  cache: KeyCache;
  /** This process's check of API client rows against the audit key's seals (one per process). */
  clientTrust: ClientTrust;
  /** Opens (once) and returns the named backend. */
  backend(name: string): Promise<KeyBackend>;
}

/**
 * Scopes by name, per (frozen) config. Every request and every reconcile looks its scope up, so
 * a linear search made each lookup O(scopes): with 10,000 scopes it was 44% of a reconcile pass
 * and tens of microseconds per JWKS request (measured in bench/).
 */
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
    throw new KeywardenError(
      'SCOPE_NOT_FOUND',
      `unknown scope "${name}" (configured: ${ctx.config.scopes.map((s) => s.name).join(', ')})`,
    );
  }
  return scope;
}
