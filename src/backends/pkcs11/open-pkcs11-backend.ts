import { KeywardenError } from '../../policy/errors';
import type { Pkcs11BackendConfig } from './config';
import { Cryptoki } from './cryptoki';
import { ObjectStoreLock } from './object-store-lock';
import { Pkcs11Backend, type Pkcs11BackendOptions } from './pkcs11-backend';
import { SessionPool } from './session-pool';

/** Largest session pool accepted: more sessions than this only queue on libuv's thread pool. */
const MAX_SESSIONS = 64;

/**
 * Loads the module (after copying `config.moduleEnv` into process.env), finds the token by label,
 * opens `config.sessions` sessions and logs in once. The caller resolves the PIN from its env/file
 * source and passes it as `pinValue`; it is kept only inside a login closure, never in a property.
 *
 * Throws BACKEND_MODULE_NOT_FOUND, BACKEND_TOKEN_NOT_FOUND, BACKEND_PIN_INCORRECT, ...
 * Set UV_THREADPOOL_SIZE to at least `sessions` so signatures really run in parallel.
 */
export async function openPkcs11Backend(
  config: Pkcs11BackendConfig & { pinValue: string },
  opts: Pkcs11BackendOptions = {},
): Promise<Pkcs11Backend> {
  const { pinValue, ...cfg } = config;
  if (!Number.isInteger(cfg.sessions) || cfg.sessions < 1 || cfg.sessions > MAX_SESSIONS) {
    throw new KeywardenError(
      'CONFIG_INVALID',
      `backend '${cfg.name}': sessions must be an integer 1..${MAX_SESSIONS}, got ${String(cfg.sessions)}`,
    );
  }
  if (typeof pinValue !== 'string' || pinValue.length === 0) {
    throw new KeywardenError('BACKEND_PIN_INCORRECT', `backend '${cfg.name}': the PIN is empty`);
  }
  const objectLock = openObjectLock(cfg);
  let ck: Cryptoki;
  try {
    ck = Cryptoki.open(cfg.module, cfg.moduleEnv);
  } catch (e) {
    objectLock?.release();
    throw e;
  }
  const pool = new SessionPool(
    ck,
    cfg.tokenLabel,
    cfg.sessions,
    (slot, session) => ck.login(slot, session, pinValue),
    // Runs from pool.start() on, after `backend` below is initialised.
    (generation) => backend.sessionsReset(generation),
    opts.recovery,
  );
  const backend = new Pkcs11Backend(ck, cfg, pool, objectLock, opts);
  try {
    await pool.start();
  } catch (e) {
    await pool.close();
    ck.release();
    objectLock?.release();
    throw e;
  }
  return backend;
}

/**
 * The backend's object lock, or null. The default lock file failing to open (a dataDir this
 * user may not write, a PostgreSQL deployment without one) is a warning, not a refusal: the lock
 * guards against a SoftHSM2 defect, and a daemon that started yesterday should start today.
 */
function openObjectLock(cfg: Pkcs11BackendConfig): ObjectStoreLock | null {
  if (!cfg.objectLock) return null;
  try {
    return ObjectStoreLock.open(cfg.objectLock.file);
  } catch (e) {
    if (cfg.objectLock.required) throw e;
    process.emitWarning(
      `backend '${cfg.name}': ${(e as Error).message}; object-store work is not locked against ` +
        'other processes on this host (set objectLockFile to a writable path, or null)',
      { code: 'KEYWARDEN_PKCS11_OBJECT_LOCK' },
    );
    return null;
  }
}
