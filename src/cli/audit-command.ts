import { Command, InvalidArgumentError } from 'commander';
import { auditCheckpoint, auditPrune, auditTail, auditVerify, type Wire } from '../admin';
import type { AuditVerifyReport } from '../lifecycle';
import { parseDurationSeconds } from '../policy/duration';
import { EXIT } from './exit-codes';
import { iso, output, runOperation, table } from './io';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** `2025-01-31`, `2025-01-31T12:00:00Z`, or a duration (`400d`) meaning that long ago. */
function beforeDate(v: string): { date?: Date; agoSeconds?: number } {
  const ago = parseDurationSeconds(v);
  if (ago !== undefined) return { agoSeconds: ago };
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(Date.parse(v))) {
    throw new InvalidArgumentError('must be an ISO date (2025-01-31[T12:00:00Z]) or a duration such as 400d');
  }
  return { date: new Date(v) };
}

function witness(v: string, previous: { seq: number; hash: string }[] = []) {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(v);
  if (!m) throw new InvalidArgumentError('must be <seq>:<64 hex chars>');
  return [...previous, { seq: Number(m[1]), hash: m[2]! }];
}

type PrintedRecord = Wire<Awaited<ReturnType<typeof auditTail.run>>>[number];

function summary(r: PrintedRecord): string {
  const d = { ...r.data };
  delete d.signature;
  delete d.anchor;
  const s = JSON.stringify(d);
  return s === '{}' ? '' : s.length > 90 ? `${s.slice(0, 89)}…` : s;
}

function humanVerify(r: Wire<AuditVerifyReport>): string {
  const lines = [
    r.ok
      ? 'audit chain OK'
      : `audit chain BROKEN at seq ${r.break!.seq} (${r.break!.kind}): ${r.break!.message}`,
    `records ${r.records}${r.firstSeq !== null ? ` (seq ${r.firstSeq}..${r.lastSeq})` : ''}, head seq ${r.headSeq}` +
      (r.prunedBelow !== null ? `, pruned below seq ${r.prunedBelow}` : ''),
    `checkpoints ${r.checkpoints}` +
      (r.latestCheckpoint
        ? `, latest at seq ${r.latestCheckpoint.seq} (${r.latestCheckpoint.at}) covering seq ${r.latestCheckpoint.coversSeq}`
        : ''),
    `trust: ${r.trust.status}: ${r.trust.detail}`,
    ...r.warnings.map((w) => `warning: ${w}`),
  ];
  return lines.join('\n');
}

/** `keywarden audit tail|verify|checkpoint|prune`. */
export function auditCommand(): Command {
  const audit = new Command('audit').description(
    'read, verify, checkpoint and prune the hash-chained audit log',
  );

  audit
    .command('tail')
    .description('show the newest audit records (oldest first)')
    .option('--scope <scope>', 'only records of this scope')
    .option('--kid <kid>', 'only records about this key')
    .option('--type <type>', 'only records of this type (e.g. key.revoked, audit.checkpoint)')
    .option('--limit <n>', 'how many records (default 20)', positiveInt, 20)
    .action(async (opts: { scope?: string; kid?: string; type?: string; limit: number }, cmd: Command) => {
      const rows = await runOperation(cmd, auditTail, {
        limit: opts.limit,
        ...(opts.scope !== undefined ? { scope: opts.scope } : {}),
        ...(opts.kid !== undefined ? { kid: opts.kid } : {}),
        ...(opts.type !== undefined ? { type: opts.type } : {}),
      });
      output(cmd, rows, () =>
        rows.length === 0
          ? 'no audit records'
          : table(
              ['seq', 'at', 'type', 'actor', 'scope', 'kid', 'data'],
              rows.map((r) => [r.seq, iso(r.at), r.type, r.actor, r.scope, r.kid?.slice(0, 12), summary(r)]),
            ),
      );
    });

  audit
    .command('verify')
    .description('walk the chain and every signature; report the first break (exit 1 when broken)')
    .option('--offline', 'do not compare the latest signer with the key in the HSM')
    .option('--trust-kid <kid...>', 'audit key ids trusted without asking the HSM')
    .option(
      '--witness <seq:hash...>',
      'a (seq, hash) kept outside the database that must still be in the chain',
      witness,
    )
    .action(
      async (
        opts: { offline?: boolean; trustKid?: string[]; witness?: { seq: number; hash: string }[] },
        cmd: Command,
      ) => {
        const report = await runOperation(cmd, auditVerify, {
          online: !opts.offline,
          trustKids: opts.trustKid ?? [],
          witnesses: opts.witness ?? [],
        });
        output(cmd, report, () => humanVerify(report));
        if (!report.ok) process.exitCode = EXIT.NEGATIVE;
      },
    );

  audit
    .command('checkpoint')
    .description('sign a checkpoint over the chain head now (the daemon does this on its own)')
    .action(async (_o, cmd: Command) => {
      const r = await runOperation(cmd, auditCheckpoint, {});
      output(cmd, r, () =>
        r.written
          ? `checkpoint at seq ${r.seq} covers seq ${r.covers?.seq} (audit key ${r.kid})`
          : `no checkpoint: ${r.reason}`,
      );
    });

  audit
    .command('prune')
    .description(
      'remove the oldest records before a date, never evidence about a published or recently dead key; leaves a signed anchor',
    )
    .requiredOption(
      '--before <date|duration>',
      'ISO date, or a duration meaning that long ago (e.g. 800d)',
      beforeDate,
    )
    .action(async (opts: { before: { date?: Date; agoSeconds?: number } }, cmd: Command) => {
      // A duration is counted back from the daemon's clock, not this machine's.
      const r = await runOperation(
        cmd,
        auditPrune,
        opts.before.date
          ? { before: opts.before.date.toISOString() }
          : { olderThanSeconds: opts.before.agoSeconds ?? 0 },
      );
      output(cmd, r, () =>
        [
          r.pruned === 0
            ? `nothing older than ${r.before} to prune`
            : `pruned ${r.pruned} record(s); the chain now starts at seq ${r.firstSeq} (anchor at seq ${r.anchorSeq})`,
          r.blockedBy ? `stopped at seq ${r.blockedBy.seq}: ${r.blockedBy.reason}` : '',
        ]
          .filter(Boolean)
          .join('\n'),
      );
    });
  return audit;
}
