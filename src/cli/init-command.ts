import { Command } from 'commander';
import { reconcileAll, type ReconcileReport } from '../lifecycle/reconcile-scope';
import { pickSigningKey } from '../policy/next-actions';
import { ensureStoreDirectory } from '../store/data-source';
import { EXIT_CODE } from './exit-codes';
import { cliActor, loadConfigFor, output, table, withRuntime } from './io';

/**
 * `keywarden init`: creates the data dir, migrates the store and reconciles every scope once,
 * which creates each scope's first key. Idempotent: a second run changes nothing.
 * (Token initialisation is the HSM's business: see hsm/init-token.sh for SoftHSM2.)
 */
export function initCommand(): Command {
  return new Command('init')
    .description("prepare the store and create each scope's first key (idempotent)")
    .action(async (_o, cmd: Command) => {
      const config = loadConfigFor(cmd);
      ensureStoreDirectory(config.dataDir);
      await withRuntime(cmd, async ({ ctx }) => {
        const reports = await reconcileAll(ctx, cliActor());
        const failed = reports.filter((r) => r.errors.length > 0);
        const now = ctx.clock.now();
        const rows: { scope: string; signingKid: string | null; actions: ReconcileReport['done'] }[] = [];
        for (const s of config.scopes) {
          const signing = pickSigningKey(
            (await ctx.keys.listByScope(s.name)).filter((k) => k.status === 'ready'),
            now,
          );
          rows.push({
            scope: s.name,
            signingKid: signing?.kid ?? null,
            actions: reports.find((r) => r.scope === s.name)?.done ?? [],
          });
        }
        output(
          cmd,
          { scopes: rows, errors: failed.flatMap((r) => r.errors.map((e) => ({ scope: r.scope, ...e }))) },
          () =>
            table(
              ['scope', 'signing key', 'created now'],
              rows.map((r) => [
                r.scope,
                r.signingKid ?? 'NONE',
                r.actions.filter((a) => a.action === 'create').length,
              ]),
            ),
        );
        if (failed.length > 0) {
          for (const r of failed)
            for (const e of r.errors)
              process.stderr.write(`scope ${r.scope}: ${e.action} failed: ${e.code}: ${e.message}\n`);
          process.exitCode = EXIT_CODE[failed[0]!.errors[0]!.code];
        }
      });
    });
}
