import type { BackendConfigBase, BackendTypeRules } from '../policy/backend-type';
import type { KeyBackend } from './key-backend';

/** What `hsm status` shows of one backend: no login, no PIN, nothing secret. */
export interface BackendStatus {
  /** Type-specific facts for `--json` (module and token, vault URL, ...). */
  details: Record<string, unknown>;
  /** The same for people, a line each. */
  summary: string[];
}

/**
 * A backend type as registered (src/backends/registry.ts): its config rules (pure, in policy's
 * terms), how to open one, and what `hsm status` says of it. A new backend is one folder
 * exporting one of these, one line in the registry, and a run of the shared contract suite
 * (test/contract/key-backend.contract.ts).
 */
export interface BackendType<C extends BackendConfigBase = BackendConfigBase> extends BackendTypeRules<C> {
  /** Opens a configured backend; its library is loaded here, on first use, not at import. */
  open(config: C): Promise<KeyBackend>;
  /** Describes a configured backend without logging in (module, slots, vault, ...). */
  status(config: C): BackendStatus;
}
