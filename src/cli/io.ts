import type { Command } from 'commander';
import { executeOperation, localOperator, operatorActor, type AdminOperation, type Wire } from '../admin';
import { CONFIG_ENV, defaultConfigPath, loadConfig } from '../config/load-config';
import type { Keywarden } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { callAdmin } from './admin-client';
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
  return callAdmin<Wire<R>>(adminSocketPath(cmd), op.name, input);
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
