import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import {
  configChanges,
  isNoChange,
  type ConfigChanges,
  type ConfigReloadOutcome,
} from '../policy/config-changes';
import { ConfigInvalidError, KeywardenError } from '../policy/errors';
import type { KeywardenConfig } from '../policy/scope';
import { parseConfigSnapshot, type LoadedConfig } from './load-config';
import { tlsServerOptions } from './tls-options';

/** What a reload works on: the running config, how to apply a new one, and who hears the outcome. */
export interface ReloadTarget {
  current(): KeywardenConfig;
  /**
   * Applies a validated config whose changes are all reloadable. Must either switch completely or
   * throw having switched nothing (the reload is then refused and the running config kept).
   */
  apply(next: LoadedConfig, changes: ConfigChanges): Promise<void>;
  /** Every outcome, applied or refused (metrics, the audit log). */
  outcome(o: ConfigReloadOutcome): Promise<void>;
}

/**
 * SIGHUP: reads the config file again and validates it in full with the start-up loader. A valid
 * file whose changes are all reloadable is applied; an unreadable or invalid one, or one that
 * changes a restart-only field, is refused with every problem logged, and the running config
 * stays. Signals that arrive during a reload are folded into one more reload after it, so the
 * last signal always leads to a reload that reads the file as it is by then.
 */
export class ConfigReloader {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly file: string,
    private readonly target: ReloadTarget,
    private readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Reloads now, or once more after the reload in progress. Resolves when that one is done. */
  request(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.loop().finally(() => (this.running = null));
    return this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      await this.reloadOnce();
    } while (this.again);
  }

  private async reloadOnce(): Promise<void> {
    this.log.info({ file: this.file }, 'reloading config');
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      return this.refuse(null, [`cannot read ${this.file}: ${(e as Error).message}`]);
    }
    const sha256 = createHash('sha256').update(text).digest('hex');
    let loaded: LoadedConfig;
    try {
      loaded = parseConfigSnapshot({ source: this.file, text }, this.env);
      // The TLS files as every serving process will read them: a renewal that does not check out
      // is refused here, before any process switches (a worker could not apply it).
      tlsServerOptions(loaded.config, new Date());
    } catch (e) {
      return this.refuse(sha256, problemsOf(e));
    }
    const next = loaded.config;
    const changes = configChanges(this.target.current(), next);
    if (changes.restartRequired.length > 0) {
      return this.refuse(
        sha256,
        changes.restartRequired.map((f) => `${f}: changed, and takes effect only on a restart`),
      );
    }
    if (isNoChange(changes)) {
      this.log.info({ file: this.file, sha256 }, 'config reload: nothing changed');
      await this.target.outcome({ applied: true, sha256, changes });
      return;
    }
    try {
      await this.target.apply(loaded, changes);
    } catch (e) {
      return this.refuse(sha256, [`cannot apply: ${(e as Error).message}`]);
    }
    this.log.info(
      {
        file: this.file,
        sha256,
        scopesAdded: changes.scopesAdded,
        scopesRemoved: changes.scopesRemoved,
        scopesChanged: changes.scopesChanged,
        serverChanged: changes.serverChanged,
      },
      'config reloaded',
    );
    await this.target.outcome({ applied: true, sha256, changes });
  }

  private async refuse(sha256: string | null, problems: string[]): Promise<void> {
    for (const problem of problems) this.log.error({ file: this.file, problem }, 'config reload: problem');
    this.log.error(
      { file: this.file, sha256, problems },
      `config reload refused (${problems.length} problem${problems.length === 1 ? '' : 's'}): the running config is kept`,
    );
    await this.target.outcome({ applied: false, sha256, problems });
  }
}

/** Every problem of a refused file, one line each. */
function problemsOf(e: unknown): string[] {
  if (e instanceof ConfigInvalidError) {
    return e.problems.map((p) => `${p.path}${p.scope ? ` (scope ${p.scope})` : ''}: ${p.message}`);
  }
  if (e instanceof KeywardenError) return [e.message];
  return [`internal error: ${(e as Error)?.message ?? String(e)}`];
}
