import * as fs from 'node:fs';
import type { Command } from 'commander';
import { executeOperation, localOperator, operatorActor, type AdminOperation, type Wire } from '../admin';
import { CONFIG_ENV, defaultConfigPath, loadConfig } from '../config/load-config';
import type { Keywarden } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { callAdmin, type AdminTarget } from './admin-client';
import { openRuntime, storeAuditLog } from '../main';
import { createLogger } from '../log';
import type { KeywardenConfig } from '../policy/scope';

/** Options every command inherits from the program. */
export interface GlobalOptions {
  config?: string;
  json?: boolean;
  logLevel?: string;
  /** Work on the store and HSM directly instead of through the daemon (break-glass, tests). */
  local?: boolean;
  /** The daemon's admin socket (default: $KEYWARDEN_ADMIN_SOCKET, else admin.socket.path). */
  socket?: string;
  /** The daemon's TLS listener for the admin API with an operator certificate ($KEYWARDEN_ADMIN_URL). */
  adminUrl?: string;
  operatorCert?: string;
  operatorKey?: string;
  adminCa?: string;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

export function loadConfigFor(cmd: Command): KeywardenConfig {
  return loadConfig(globals(cmd).config ?? defaultConfigPath());
}

/**
 * Who a direct (`--local`, `init`) action is attributed to in the audit log: the transport and
 * this process's OS user, e.g. `local:alice(uid=1001)@host`.
 */
export function localActor(): string {
  return operatorActor(localOperator());
}

/** The admin socket the CLI talks to: --socket, else $KEYWARDEN_ADMIN_SOCKET, else the config's. */
export function adminSocketPath(cmd: Command): string {
  const g = globals(cmd);
  const explicit = g.socket ?? process.env[CONFIG_ENV.adminSocket];
  if (explicit) return explicit;
  const socket = loadConfigFor(cmd).admin.socket;
  if (!socket) {
    throw new KeywardenError(
      'DAEMON_UNREACHABLE',
      'no admin socket is configured (admin.socket is null): give --socket PATH, or run the command with ' +
        '--local to work on the store and HSM directly',
    );
  }
  return socket.path;
}

/**
 * Runs an operator command: on the daemon over its admin socket (the default), or with --local
 * on the store and HSM directly, audited with this process's OS user as the actor. Both run the
 * same operation (src/admin/) and hand back the same JSON value.
 */
export async function runOperation<I, R>(cmd: Command, op: AdminOperation<I, R>, input: I): Promise<Wire<R>> {
  if (globals(cmd).local) {
    return withRuntime(cmd, (kw) => executeOperation(kw, op, input, localActor()));
  }
  return callAdmin<Wire<R>>(adminTarget(cmd), op.name, input);
}

/** A file an option names, read now; REQUEST_INVALID (exit 2) naming the option when it cannot be. */
export function readOptionFile(option: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new KeywardenError('REQUEST_INVALID', `cannot read ${option} ${file}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * Where the CLI reaches the admin API: --admin-url (or $KEYWARDEN_ADMIN_URL), an https URL of the
 * daemon's TLS listener, with --operator-cert and --operator-key; else the admin socket.
 */
export function adminTarget(cmd: Command): AdminTarget {
  const g = globals(cmd);
  const url = g.adminUrl ?? process.env.KEYWARDEN_ADMIN_URL;
  if (url === undefined) {
    if (g.operatorCert !== undefined || g.operatorKey !== undefined || g.adminCa !== undefined) {
      throw new KeywardenError(
        'REQUEST_INVALID',
        '--operator-cert, --operator-key and --admin-ca go with --admin-url',
      );
    }
    return { kind: 'socket', path: adminSocketPath(cmd) };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new KeywardenError('REQUEST_INVALID', `--admin-url ${url} is not a URL`);
  }
  if (parsed.protocol !== 'https:') {
    throw new KeywardenError(
      'REQUEST_INVALID',
      `--admin-url must be https (an operator certificate over TLS): got ${url}`,
    );
  }
  if (g.operatorCert === undefined || g.operatorKey === undefined) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      '--admin-url needs --operator-cert FILE and --operator-key FILE',
    );
  }
  return {
    kind: 'https',
    url: parsed.origin,
    cert: readOptionFile('--operator-cert', g.operatorCert),
    key: readOptionFile('--operator-key', g.operatorKey),
    ...(g.adminCa !== undefined ? { ca: readOptionFile('--admin-ca', g.adminCa) } : {}),
  };
}

/**
 * Opens the runtime for a one-shot command (logs go to stderr), runs `fn` on its facade, closes it.
 * The store must exist (STORE_NOT_INITIALIZED, "run keywarden init", otherwise) unless
 * `createStore` is set: only `init` makes one.
 */
export async function withRuntime<T>(
  cmd: Command,
  fn: (kw: Keywarden, config: KeywardenConfig) => Promise<T>,
  opts: { createStore?: boolean } = {},
): Promise<T> {
  const config = loadConfigFor(cmd);
  const log = createLogger(globals(cmd).logLevel ?? 'warn', 2);
  const rt = await openRuntime(config, {
    log,
    audit: storeAuditLog(),
    storeMustExist: !opts.createStore,
  });
  try {
    return await fn(rt.keywarden, config);
  } finally {
    await rt.close();
  }
}

/** Prints `value` as JSON with --json, otherwise the human rendering. */
export function output(cmd: Command, value: unknown, human: () => string): void {
  if (globals(cmd).json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else process.stdout.write(`${human()}\n`);
}

/** A fixed-width text table for human output. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [
    headers,
    ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c)))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (c ?? '').padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A timestamp as printed: ISO 8601 (a Date, or the string a JSON answer carries), or '-'. */
export const iso = (d: Date | string | null | undefined): string =>
  d ? (typeof d === 'string' ? d : d.toISOString()) : '-';
