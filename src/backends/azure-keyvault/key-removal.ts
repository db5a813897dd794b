import { setTimeout as sleep } from 'node:timers/promises';
import type { KeyClient, KeyProperties } from '@azure/keyvault-keys';
import { hasCode, KeywardenError, type ErrorCode } from '../../policy/errors';
import { TAG_KEY_ID } from './key-name';

/** What removing keys needs of the backend: its client and its guarded, retried call. */
export interface VaultAccess {
  readonly client: KeyClient;
  call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, idempotent: boolean): Promise<T>;
  /** `Azure Key Vault <host>: <action>`, for messages. */
  what(action: string): string;
}

export interface RemovalSettings {
  purgeOnDestroy: boolean;
  /** How often a deleted key is checked for the deleted state before it is purged. */
  deletePollIntervalMs: number;
  /** How long that is waited for (the next destroy picks up where this one stopped). */
  deleteTimeoutMs: number;
}

/** Failures after which the vault certainly made nothing: no rollback is attempted. */
const VAULT_DID_NOT_ACT: readonly ErrorCode[] = [
  'BACKEND_UNAUTHORIZED',
  'BACKEND_OBJECT_EXISTS',
  'BACKEND_THROTTLED',
  'BACKEND_MECHANISM_UNSUPPORTED',
];

/** Every version of a key; [] when the key does not exist. */
export async function versionsOf(v: VaultAccess, name: string): Promise<KeyProperties[]> {
  try {
    return await v.call(
      v.what(`list versions of key ${name}`),
      async (signal) => {
        const out: KeyProperties[] = [];
        for await (const p of v.client.listPropertiesOfKeyVersions(name, { abortSignal: signal }))
          out.push(p);
        return out;
      },
      true,
    );
  } catch (e) {
    if (hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) return [];
    throw e;
  }
}

/**
 * Disables the versions (so none can sign even if what follows fails), soft-deletes the key and,
 * with `purgeOnDestroy`, purges it. `versions` null = every version. Each step treats "not
 * found" as already done, so a removal interrupted anywhere is finished by the next call.
 */
export async function removeKey(
  v: VaultAccess,
  settings: RemovalSettings,
  name: string,
  versions: string[] | null,
): Promise<void> {
  const targets = versions ?? (await versionsOf(v, name)).map((p) => p.version ?? '').filter((x) => x !== '');
  for (const version of targets) {
    try {
      await v.call(
        v.what(`disable key ${name}/${version}`),
        (signal) => v.client.updateKeyProperties(name, version, { enabled: false, abortSignal: signal }),
        true,
      );
    } catch (e) {
      if (!hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) throw e;
    }
  }
  let deletedNow = false;
  try {
    await v.call(
      v.what(`delete key ${name}`),
      (signal) =>
        v.client.beginDeleteKey(name, { abortSignal: signal, intervalInMs: settings.deletePollIntervalMs }),
      true,
    );
    deletedNow = true;
  } catch (e) {
    if (!hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) throw e;
  }
  if (settings.purgeOnDestroy) await purge(v, settings, name, deletedNow);
}

/** Waits (bounded) for a just-deleted key to reach the deleted state, then purges it. */
async function purge(
  v: VaultAccess,
  settings: RemovalSettings,
  name: string,
  deletedNow: boolean,
): Promise<void> {
  const deadline = Date.now() + settings.deleteTimeoutMs;
  for (;;) {
    try {
      await v.call(
        v.what(`read deleted key ${name}`),
        (signal) => v.client.getDeletedKey(name, { abortSignal: signal }),
        true,
      );
      break;
    } catch (e) {
      if (!hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) throw e;
      if (!deletedNow) return; // nothing deleted, nothing to purge
      if (Date.now() >= deadline) {
        throw new KeywardenError(
          'BACKEND_UNAVAILABLE',
          v.what(
            `key ${name} was deleted but did not reach the deleted state in ${settings.deleteTimeoutMs} ms; destroy again later to purge it`,
          ),
        );
      }
      await sleep(settings.deletePollIntervalMs);
    }
  }
  try {
    await v.call(
      v.what(`purge deleted key ${name}`),
      (signal) => v.client.purgeDeletedKey(name, { abortSignal: signal }),
      true,
    );
  } catch (e) {
    if (!hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) throw e;
  }
}

/**
 * After a failed create: if the vault may have made the key anyway (5xx, network failure,
 * unusable answer), remove it so no half-made key stays behind. Only a key carrying this
 * request's keyId tag is touched; `remove` removes the given versions. Returns the error to throw.
 */
export async function rollbackCreate(
  v: VaultAccess,
  err: KeywardenError,
  name: string,
  keyId: string,
  remove: (versions: string[]) => Promise<void>,
): Promise<KeywardenError> {
  if (VAULT_DID_NOT_ACT.includes(err.code)) return err;
  try {
    const versions = await versionsOf(v, name);
    if (versions.length === 0) return err;
    if (versions.some((p) => p.tags?.[TAG_KEY_ID] !== keyId)) {
      return new KeywardenError(
        err.code,
        `${err.message}; key ${name} exists but is not this request's, left alone`,
        {
          cause: err,
        },
      );
    }
    await remove(versions.map((p) => p.version ?? '').filter((x) => x !== ''));
    return new KeywardenError(err.code, `${err.message}; the half-made key ${name} was removed`, {
      cause: err,
    });
  } catch (re) {
    const why = re instanceof Error ? re.message : String(re);
    return new KeywardenError(
      err.code,
      `${err.message}; removing the possibly half-made key ${name} failed too (${why}): list() reports it for cleanup`,
      { cause: err },
    );
  }
}
