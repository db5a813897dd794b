import type { z } from 'zod';
import type { SigningAlg } from './algorithms';

/** What every configured backend is, whatever its type: the rest is the type's own business. */
export interface BackendConfigBase {
  /** A registered backend type (`pkcs11`, `azure`, ...). */
  readonly type: string;
  /** The backend's name: its key under `backends:` in the config. */
  readonly name: string;
}

/** A scope as a backend type's rules see it (parsed, before the policy is converted). */
export interface ScopeOnBackend {
  name: string;
  alg: SigningAlg;
  production: boolean;
}

/**
 * The pure part of a backend type (smallstep's `apiv1.Register`): how its config is shaped and
 * checked. Config validation takes the registered types as an argument (policy imports nothing
 * of ours); each backend folder exports its rules, and src/backends/registry.ts lists them.
 */
export interface BackendTypeRules<C extends BackendConfigBase = BackendConfigBase> {
  /** The `type:` of a backend entry in the config. */
  readonly type: string;
  /** The entry's fields, `type` included (a strict object: an unknown field is a typo). */
  readonly schema: z.ZodType;
  /**
   * The frozen config of a parsed entry: relative paths resolved against the config file's
   * directory (`resolve`). Problems the schema cannot express go to `problem` (field, message).
   * `dataDir` (absolute) is where a type keeps files of its own by default.
   */
  toConfig(
    name: string,
    parsed: unknown,
    resolve: (path: string) => string,
    problem: (field: string, message: string) => void,
    dataDir: string,
  ): C;
  /** Problems of a scope that uses a backend of this type (e.g. an algorithm it lacks). */
  checkScope?(scope: ScopeOnBackend, backend: C): { field: string; message: string }[];
  /** The first backend of a type that sets this holds the audit checkpoint key by default. */
  readonly defaultForAuditKey?: boolean;
  /** Operations one process may run on the backend at once (PKCS#11 sessions): sizes libuv's pool. */
  concurrency?(backend: C): number;
}
