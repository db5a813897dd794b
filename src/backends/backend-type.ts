import type { BackendConfigBase, BackendTypeRules } from '../policy/backend-type';
import type { ErrorCode } from '../policy/errors';
import type { KeyBackend } from './key-backend';

/** What `hsm status` shows of one backend: no login, no PIN, nothing secret. */
export interface BackendStatus {
  /** Type-specific facts for `--json` (module and token, vault URL, ...). */
  details: Record<string, unknown>;
  /** The same for people, a line each. */
  summary: string[];
}

/** A problem with what a configured backend needs around it (`config check`, `config check --deep`). */
export interface BackendCheckProblem {
  /** The backend's config field it concerns (`pin`, `module`, ...), or null for the backend as a whole. */
  field: string | null;
  /** The error code opening or using the backend would raise for it. */
  code: ErrorCode;
  message: string;
  /** A local problem that makes a probe pointless (no module file, no credential to present). */
  blocksProbe?: boolean;
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
  /**
   * Optional: the files and environment variables the backend needs (its secret source, its
   * module file, a CA file), checked without loading or contacting anything (`config check`).
   */
  localProblems?(config: C, env: NodeJS.ProcessEnv): BackendCheckProblem[];
  /**
   * Optional: a probe with no side effect (no login, no write, nothing created): the module
   * loads, the token is there, the service answers (`config check --deep`). Never throws.
   */
  probe?(config: C): Promise<{ problems: BackendCheckProblem[]; summary: string }>;
}
