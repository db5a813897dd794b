import { Command } from 'commander';
import { prepareDataDir } from '../main';
import { EXIT_CODE } from './exit-codes';
import { loadConfigFor, localActor, output, table, withRuntime } from './io';

/**
 * `keywarden init`: creates the data dir, migrates the store and reconciles every scope once,
 * which creates each scope's first key. Idempotent: a second run changes nothing. Always direct
 * (no daemon runs before it): its records name the `local` transport and this OS user.
 * (Token initialisation is the HSM's business: see hsm/init-token.sh for SoftHSM2.)
 */
export function initCommand(): Command {
  return new Command('init')
    .description("prepare the store and create each scope's first key (idempotent)")
    .action(async (_o, cmd: Command) => {
      const config = loadConfigFor(cmd);
      prepareDataDir(config.dataDir);
      await withRuntime(
        cmd,
        async (kw) => {
          const { scopes: rows, errors } = await kw.init(localActor());
          output(cmd, { scopes: rows, errors }, () =>
            table(
              ['scope', 'signing key', 'created now'],
              rows.map((r) => [
                r.scope,
                r.signingKid ?? 'NONE',
                r.actions.filter((a) => a.action === 'create').length,
              ]),
            ),
          );
          if (errors.length > 0) {
            for (const e of errors)
              process.stderr.write(`scope ${e.scope}: ${e.action} failed: ${e.code}: ${e.message}\n`);
            process.exitCode = EXIT_CODE[errors[0]!.code];
          }
        },
        { createStore: true },
      );
    });
}
