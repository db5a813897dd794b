import { Command, InvalidArgumentError } from 'commander';
import { formatDuration } from '../policy/duration';
import { scopesPlan } from '../admin';
import { iso, output, runOperation, table } from './io';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100)
    throw new InvalidArgumentError('must be an integer from 1 to 100');
  return n;
}

/** `keywarden plan <scope>`: the key timeline from the policy, touching nothing. */
export function planCommand(): Command {
  return new Command('plan')
    .description("print a scope's key timeline: live keys and the next N rotations (reads only)")
    .argument('<scope>')
    .option('--rotations <n>', 'how many future keys to plan', positiveInt, 3)
    .action(async (scopeName: string, opts: { rotations: number }, cmd: Command) => {
      const plan = await runOperation(cmd, scopesPlan, { scope: scopeName, rotations: opts.rotations });
      const { policy: p, keys: rows } = plan;
      output(cmd, plan, () =>
        [
          `scope ${plan.scope}: prepublish ${formatDuration(p.prepublishSeconds)}, active ${formatDuration(p.activeForSeconds)}, ` +
            `grace ${formatDuration(p.verifyGraceSeconds)}, destroy after ${formatDuration(p.destroyAfterSeconds)}`,
          '',
          table(
            ['key', 'state now', 'publish', 'activate', 'retire', 'expire', 'destroy'],
            rows.map((r) => [
              r.kid ? r.kid.slice(0, 12) : '(next)',
              r.stateNow,
              iso(r.publishAt),
              iso(r.activateAt),
              iso(r.retireAt),
              iso(r.expiresAt),
              iso(r.destroyAt),
            ]),
          ),
        ].join('\n'),
      );
    });
}
