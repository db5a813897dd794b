import * as os from 'node:os';
import type { Command } from 'commander';
import { defaultConfigPath, loadConfig } from '../config/load-config';
import type { Keywarden } from '../lifecycle';
import { openRuntime, storeAuditLog } from '../main';
import { createLogger } from '../log';
import type { KeywardenConfig } from '../policy/scope';

/** Options every command inherits from the program. */
export interface GlobalOptions {
  config?: string;
  json?: boolean;
  logLevel?: string;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

export function loadConfigFor(cmd: Command): KeywardenConfig {
  return loadConfig(globals(cmd).config ?? defaultConfigPath());
}

/** Who an operator action is attributed to in the audit log. */
export function cliActor(): string {
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    // Containers may run with a uid that has no passwd entry.
  }
  return `cli:${user}@${os.hostname()}`;
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

export const iso = (d: Date | null | undefined): string => (d ? d.toISOString() : '-');
