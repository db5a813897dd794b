import * as path from 'node:path';
import { z } from 'zod';
import type { BackendConfigBase, BackendTypeRules } from '../../policy/backend-type';
import { pinSourceSchema } from '../../policy/config-schema';
import type { PinSource } from '../../policy/scope';

/** A PKCS#11 backend as configured (paths resolved). */
export interface Pkcs11BackendConfig extends BackendConfigBase {
  type: 'pkcs11';
  name: string;
  /** Absolute path of the vendor's PKCS#11 module (.so). */
  module: string;
  tokenLabel: string;
  pin: PinSource;
  /** Environment the module reads at load (e.g. SOFTHSM2_CONF); set before C_Initialize. */
  moduleEnv: Readonly<Record<string, string>>;
  /** Size of the signing session pool. */
  sessions: number;
  /**
   * The file every keywarden process on this host locks around the token's object-store work
   * (ObjectStoreLock); null or absent for none. A loaded config always has it: by default
   * `<dataDir>/<backend>.pkcs11.lock`, not `required` (a process that cannot open it warns and
   * goes on without); one the operator names is required. A config built in code may leave it out.
   */
  objectLock?: { file: string; required: boolean } | null;
}

const schema = z.strictObject({
  type: z.literal('pkcs11'),
  module: z.string().min(1),
  tokenLabel: z.string().min(1).max(32),
  pin: pinSourceSchema,
  moduleEnv: z.record(z.string(), z.string()).default({}),
  sessions: z.number().int().min(1).max(64).default(4),
  objectLockFile: z.string().min(1).nullable().optional(),
});

/**
 * A relative path in a module's environment resolves against the config file's directory, and
 * so does one in a `unix:path=` address (p11-kit's P11_KIT_SERVER_ADDRESS), since the module
 * reads it from a process whose working directory nobody promised.
 */
function resolveModuleEnv(
  env: Record<string, string>,
  resolve: (p: string) => string,
): Record<string, string> {
  const relative = (v: string) => v.startsWith('./') || v.startsWith('../');
  const UNIX_PATH = 'unix:path=';
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => {
      if (relative(v)) return [k, resolve(v)];
      if (v.startsWith(UNIX_PATH) && relative(v.slice(UNIX_PATH.length))) {
        return [k, UNIX_PATH + resolve(v.slice(UNIX_PATH.length))];
      }
      return [k, v];
    }),
  );
}

/** The config rules of `type: pkcs11` backends (a vendor's module, or SoftHSM2). */
export const pkcs11ConfigRules: BackendTypeRules<Pkcs11BackendConfig> = {
  type: 'pkcs11',
  schema,
  toConfig(name, parsed, resolve, problem, dataDir) {
    const { objectLockFile, ...b } = parsed as z.infer<typeof schema>;
    if (!path.isAbsolute(b.module) && !b.module.startsWith('.')) {
      problem('module', `module "${b.module}" must be a path to the .so file`);
    }
    return {
      ...b,
      name,
      module: resolve(b.module),
      pin: 'file' in b.pin ? { file: resolve(b.pin.file) } : b.pin,
      moduleEnv: resolveModuleEnv(b.moduleEnv, resolve),
      // On by default, in dataDir: every process that reads this config (daemon, workers, a
      // --local command) then agrees on the file without being told.
      objectLock:
        objectLockFile === null
          ? null
          : {
              file: path.resolve(dataDir, objectLockFile ?? `${name}.pkcs11.lock`),
              required: objectLockFile !== undefined,
            },
    };
  },
  defaultForAuditKey: true,
  concurrency: (b) => b.sessions,
};

/** Narrows a configured backend to a PKCS#11 one. */
export function isPkcs11Config(b: BackendConfigBase | undefined): b is Pkcs11BackendConfig {
  return b?.type === 'pkcs11';
}
