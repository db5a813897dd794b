import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigInvalidError, KeywardenError } from '../policy/errors';
import { installRoot } from '../install-root';
import type { KeywardenConfig } from '../policy/scope';
import { validateConfig } from './validate-config';

/** Environment variables that override the file (for containers and HA deployments). */
export const CONFIG_ENV = {
  /** Path of the config file when --config is not given. */
  file: 'KEYWARDEN_CONFIG',
  /** Overrides `store.url`, e.g. a postgres:// URL holding a password. */
  storeUrl: 'KEYWARDEN_STORE_URL',
  /** Overrides `admin.socket.path` (several daemons on one host and one config file). */
  adminSocket: 'KEYWARDEN_ADMIN_SOCKET',
} as const;

/** Default config path: `config/default.yaml` of the installation. */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env[CONFIG_ENV.file] ?? path.join(installRoot(), 'config', 'default.yaml');
}

/**
 * A config as read: the file's text and the text of every file it pulled in (scope templates'
 * tenants files), which is what a cluster primary hands its workers, and the result.
 */
export interface LoadedConfig extends ConfigSnapshot {
  config: KeywardenConfig;
}

/**
 * The inputs of one config: the file's text and the tenants files' texts by absolute path. Parsing
 * a snapshot with `files` reads nothing from disk, so a worker runs exactly the tenants the primary
 * validated, even if the file changed since (it takes effect on the next reload, everywhere).
 */
export interface ConfigSnapshot {
  /** Absolute path. */
  source: string;
  text: string;
  files?: Readonly<Record<string, string>>;
}

/**
 * Reads, parses and validates a config file. YAML syntax errors and every policy problem
 * come back as one CONFIG_INVALID error; nothing is written.
 */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): KeywardenConfig {
  return loadConfigFile(file, env).config;
}

/** loadConfig, keeping the text it validated. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const source = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(source, 'utf8');
  } catch (e) {
    throw new KeywardenError('CONFIG_INVALID', `cannot read config file ${source}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return parseConfigSnapshot({ source, text }, env);
}

/** Parses YAML text and validates it; relative paths resolve against the file's directory. */
export function parseConfigText(
  text: string,
  source: string,
  env: NodeJS.ProcessEnv = process.env,
): KeywardenConfig {
  return parseConfigSnapshot({ source, text }, env).config;
}

/**
 * parseConfigText, returning the snapshot it validated: with `snapshot.files`, tenants files come
 * from there only (a path missing from it is a problem); without, from disk, recorded in `files`.
 */
export function parseConfigSnapshot(
  snapshot: ConfigSnapshot,
  env: NodeJS.ProcessEnv = process.env,
): LoadedConfig {
  const files: Record<string, string> = {};
  const given = snapshot.files;
  const readTenantsFile = (file: string): string => {
    if (given) {
      if (!Object.hasOwn(given, file))
        throw new Error('not among the files the running config was read with');
      return (files[file] = given[file]!);
    }
    return (files[file] = fs.readFileSync(file, 'utf8'));
  };
  const config = parseDocumentText(snapshot.text, snapshot.source, env, readTenantsFile);
  return { source: snapshot.source, text: snapshot.text, files, config };
}

function parseDocumentText(
  text: string,
  source: string,
  env: NodeJS.ProcessEnv,
  readTenantsFile: (file: string) => string,
): KeywardenConfig {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigInvalidError(
      source,
      doc.errors.map((e) => ({
        path: `line ${e.linePos?.[0]?.line ?? '?'}`,
        message: e.message.split('\n')[0] ?? e.message,
      })),
    );
  }
  let raw: Record<string, unknown> | null;
  try {
    // Aliases resolve here: an undefined one (`*nope`), or more than the alias budget (a
    // "billion laughs" document), throws; that is the file's fault, not an internal error.
    raw = doc.toJS({ maxAliasCount: 100 }) as Record<string, unknown> | null;
  } catch (e) {
    throw new ConfigInvalidError(source, [{ path: '(document)', message: (e as Error).message }]);
  }
  const storeUrl = env[CONFIG_ENV.storeUrl];
  let withEnv =
    storeUrl && raw && typeof raw === 'object'
      ? { ...raw, store: { ...((raw.store as object | undefined) ?? {}), url: storeUrl } }
      : raw;
  const adminSocket = env[CONFIG_ENV.adminSocket];
  if (adminSocket && withEnv && typeof withEnv === 'object') {
    const admin = (withEnv.admin as { socket?: object | null } | undefined) ?? {};
    withEnv = { ...withEnv, admin: { ...admin, socket: { ...(admin.socket ?? {}), path: adminSocket } } };
  }
  return validateConfig(withEnv, { source, baseDir: path.dirname(source), readTenantsFile });
}
