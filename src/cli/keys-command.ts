import { Command } from 'commander';
import {
  keysList,
  keysRevoke,
  keysRotate,
  keysShow,
  keysVerify,
  type KeyDescription,
  type Wire,
} from '../admin';
import { EXIT } from './exit-codes';
import { iso, output, runOperation, table } from './io';

function humanKey(d: Wire<KeyDescription>): string {
  return [
    `kid:        ${d.kid ?? '(generating)'}`,
    `scope:      ${d.scope}`,
    `alg:        ${d.alg}`,
    `state:      ${d.state}`,
    ...(d.trust === undefined ? [] : [`trust:      ${d.trust}`]),
    `publish:    ${iso(d.publishAt)}`,
    `activate:   ${iso(d.activateAt)}`,
    `retire:     ${iso(d.retireAt)}`,
    `expires:    ${iso(d.expiresAt)}`,
    `revoked:    ${iso(d.revokedAt)}${d.revokedReason ? ` (${d.revokedReason})` : ''}`,
    `destroyed:  ${iso(d.destroyedAt)}`,
    `backend:    ${d.backend} ${JSON.stringify(d.backendRef)}`,
    `created:    ${iso(d.createdAt)} by ${d.createdBy}`,
  ].join('\n');
}

export function keysCommand(): Command {
  const keys = new Command('keys').description('list, inspect, verify, rotate and revoke keys');

  keys
    .command('list')
    .description(
      'list keys with their state now (only the key that signs is active; older keys still in their active ' +
        'window are superseded) and how far each row is trusted (every scope, or one with --scope)',
    )
    .option('--scope <scope>', 'only this scope')
    .action(async (opts: { scope?: string }, cmd: Command) => {
      const rows = await runOperation(cmd, keysList, opts.scope !== undefined ? { scope: opts.scope } : {});
      output(cmd, rows, () =>
        rows.length === 0
          ? 'no keys'
          : table(
              ['scope', 'kid', 'alg', 'state', 'trust', 'activate', 'retire', 'expires'],
              rows.map((r) => [
                r.scope,
                r.kid,
                r.alg,
                r.state,
                r.trust,
                iso(r.activateAt),
                iso(r.retireAt),
                iso(r.expiresAt),
              ]),
            ),
      );
    });

  keys
    .command('show')
    .description('show one key (by kid or a unique kid prefix of 8+ characters)')
    .argument(
      '<kid>',
      "the key's kid, or a unique prefix of 8+ characters; one starting with '-' goes after '--'",
    )
    .action(async (kid: string, _o, cmd: Command) => {
      const d = await runOperation(cmd, keysShow, { kid });
      output(cmd, d, () => humanKey(d));
    });

  keys
    .command('verify')
    .description(
      'check every key row against its backend now (present, same public key, seal valid over the row, ' +
        'within policy) and every keywarden key in the backends has its row; exit 1 on any finding',
    )
    .action(async (_o, cmd: Command) => {
      const r = await runOperation(cmd, keysVerify, {});
      const { counts } = r;
      output(cmd, r, () =>
        [
          `${counts.trusted} trusted, ${counts.dead} dead (revoked or expired), ${counts.refused} refused, ` +
            `${counts.unchecked} not checked (generating, or scope not configured)`,
          ...r.refused.map(
            (f) =>
              `  refused ${f.reason}: scope ${f.scope} kid ${f.kid ?? '-'} (row ${f.keyId}): ${f.message}`,
          ),
          ...r.missingRows.map(
            (m) =>
              `  row-missing: backend ${m.backend} holds ${m.label} (scope ${m.scope ?? '-'}) but its row is gone`,
          ),
          r.ok
            ? 'keys verify OK'
            : `keys verify FAILED: ${r.refused.length + r.missingRows.length} finding(s)`,
        ].join('\n'),
      );
      if (!r.ok) process.exitCode = EXIT.NEGATIVE;
    });

  keys
    .command('rotate')
    .description(
      'create the next key of a scope now (normal prepublish: it signs once every JWKS cache knows it)',
    )
    .requiredOption('--scope <scope>', 'the scope to rotate')
    .action(async (opts: { scope: string }, cmd: Command) => {
      const d = await runOperation(cmd, keysRotate, { scope: opts.scope });
      output(cmd, d, () => `created ${d.kid} in scope ${d.scope}; it signs from ${iso(d.activateAt)}`);
    });

  keys
    .command('revoke')
    .description(
      'revoke a key now: it leaves the JWKS, stops signing and verifying, and its HSM objects are destroyed; ' +
        'a replacement is made if needed',
    )
    .argument(
      '<kid>',
      "the key's kid, or a unique prefix of 8+ characters; one starting with '-' goes after '--'",
    )
    .requiredOption('--reason <text>', 'why (recorded in the audit log)')
    .action(async (kid: string, opts: { reason: string }, cmd: Command) => {
      const r = await runOperation(cmd, keysRevoke, { kid, reason: opts.reason });
      output(cmd, r, () =>
        [
          `revoked ${r.revoked.kid} (scope ${r.revoked.scope}): ${opts.reason}`,
          r.destroyed
            ? 'its backend objects are destroyed'
            : 'its backend objects could not be destroyed yet (backend unreachable); the daemon retries',
          r.replacement
            ? `replacement ${r.replacement.kid} is active now`
            : 'another active key keeps signing; no replacement needed',
        ].join('\n'),
      );
    });
  return keys;
}
