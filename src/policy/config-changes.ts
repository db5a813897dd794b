import { isDeepStrictEqual } from 'node:util';
import type { KeywardenConfig, ServerConfig } from './scope';

/**
 * Fields a running daemon cannot take over on reload (SIGHUP): what it listens on, the store and
 * backends it has open (sessions, logins, migrations), the audit key's home and the log it writes.
 * A reload whose file changes any of them is refused as a whole, so the running config is always
 * exactly one file's content, never a mix. docs/operations.md "Reload" lists them.
 */
const RESTART_ONLY_TOP: readonly (keyof KeywardenConfig)[] = [
  'dataDir',
  'logLevel',
  'store',
  'backends',
  'audit',
  // The reconcile bound is the scheduler's, set when it is made.
  'scheduler',
  // The admin socket is made once at start (path, group, mode): a reload cannot move or narrow it.
  'admin',
];
const RESTART_ONLY_SERVER: readonly (keyof ServerConfig)[] = ['host', 'port'];

/** What a reload from `current` to `next` changes. */
export interface ConfigChanges {
  /** Restart-only fields that differ (dotted paths); non-empty means the reload is refused. */
  restartRequired: string[];
  scopesAdded: string[];
  scopesRemoved: string[];
  /** Scopes in both whose settings (policy, audiences, issuer, schedule, ...) differ. */
  scopesChanged: string[];
  /**
   * Reloadable `server` fields that differ (body limit, key refresh, public URL, worker header,
   * keyEvents: each app generation serves its own key-event streams with its config's limits).
   */
  serverChanged: string[];
}

/** Compares two validated configs (pure; the clock and files play no part). */
export function configChanges(current: KeywardenConfig, next: KeywardenConfig): ConfigChanges {
  const restartRequired: string[] = [];
  for (const k of RESTART_ONLY_TOP) {
    if (!isDeepStrictEqual(current[k], next[k])) restartRequired.push(k);
  }
  const serverChanged: string[] = [];
  const serverKeys = new Set([...Object.keys(current.server), ...Object.keys(next.server)]) as Set<
    keyof ServerConfig
  >;
  for (const k of serverKeys) {
    if (k === 'tls') {
      tlsChange(current.server.tls, next.server.tls, restartRequired, serverChanged);
      continue;
    }
    if (isDeepStrictEqual(current.server[k], next.server[k])) continue;
    if (RESTART_ONLY_SERVER.includes(k)) restartRequired.push(`server.${k}`);
    else serverChanged.push(`server.${k}`);
  }
  const before = new Map(current.scopes.map((s) => [s.name, s]));
  const after = new Map(next.scopes.map((s) => [s.name, s]));
  return {
    restartRequired,
    scopesAdded: [...after.keys()].filter((n) => !before.has(n)),
    scopesRemoved: [...before.keys()].filter((n) => !after.has(n)),
    scopesChanged: [...after.keys()].filter(
      (n) => before.has(n) && !isDeepStrictEqual(before.get(n), after.get(n)),
    ),
    serverChanged,
  };
}

/**
 * server.tls on reload. Turning TLS on or off, or client or operator certificates (clientCaFile,
 * operatorCaFile) on or off, changes what kind of socket listens: restart only. Anything else is reloadable, and with TLS on
 * a reload always counts as a change, because the files behind unchanged paths may have been
 * renewed (certificate rotation is what SIGHUP is for) and are read again.
 */
function tlsChange(
  current: ServerConfig['tls'],
  next: ServerConfig['tls'],
  restartRequired: string[],
  serverChanged: string[],
): void {
  if ((current === undefined) !== (next === undefined)) restartRequired.push('server.tls');
  else if ((current?.clientCaFile === undefined) !== (next?.clientCaFile === undefined))
    restartRequired.push('server.tls.clientCaFile');
  else if ((current?.operatorCaFile === undefined) !== (next?.operatorCaFile === undefined))
    restartRequired.push('server.tls.operatorCaFile');
  else if (next !== undefined) serverChanged.push('server.tls');
}

/** True when applying `changes` changes nothing that runs. */
export function isNoChange(c: ConfigChanges): boolean {
  return (
    c.restartRequired.length === 0 &&
    c.scopesAdded.length === 0 &&
    c.scopesRemoved.length === 0 &&
    c.scopesChanged.length === 0 &&
    c.serverChanged.length === 0
  );
}

/** What a reload (SIGHUP) did: applied with its changes, or refused with every problem. */
export type ConfigReloadOutcome =
  | { applied: true; sha256: string; changes: ConfigChanges }
  | { applied: false; sha256: string | null; problems: readonly string[] };
