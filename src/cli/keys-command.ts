import { Command } from 'commander';
import type { KeyListing, RowTrust } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import type { KeyRecord } from '../policy/key';
import { EXIT } from './exit-codes';
import { cliActor, iso, output, table, withRuntime } from './io';

/**
 * A key as printed by the CLI: its record plus its state now in its scope (only the signing key
 * is `active`; see policy/key-roles.ts). No private data exists to print.
 */
export function describeKey(k: KeyRecord, state: KeyListing['state'], trust?: RowTrust) {
  return {
    kid: k.kid,
    scope: k.scope,
    alg: k.alg,
    state,
    ...(trust === undefined ? {} : { trust }),
    publishAt: k.publishAt,
    activateAt: k.activateAt,
    retireAt: k.retireAt,
    expiresAt: k.expiresAt,
    revokedAt: k.revokedAt,
    revokedReason: k.revokedReason,
    destroyedAt: k.destroyedAt,
    backend: k.backendRef.backend,
    backendRef: k.backendRef.ref,
    createdAt: k.createdAt,
    createdBy: k.createdBy,
    publicJwk: k.publicJwk,
  };
}

function humanKey(d: ReturnType<typeof describeKey>): string {
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
      await withRuntime(cmd, async (kw) => {
        const rows = (await kw.listKeys(opts.scope)).map((k) => describeKey(k.record, k.state, k.trust));
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
    });

  keys
    .command('show')
    .description('show one key (by kid or a unique kid prefix of 8+ characters)')
    .argument('<kid>')
    .action(async (kid: string, _o, cmd: Command) => {
      await withRuntime(cmd, async (kw) => {
        const k = await kw.findKey(kid);
        if (!k) throw new KeywardenError('KEY_NOT_FOUND', `no key with kid ${kid}`);
        const d = describeKey(k, kw.keyState(k));
        output(cmd, d, () => humanKey(d));
      });
    });

  keys
    .command('verify')
    .description(
      'check every key row against its backend now (present, same public key, seal valid over the row, ' +
        'within policy) and every keywarden key in the backends has its row; exit 1 on any finding',
    )
    .action(async (_o, cmd: Command) => {
      await withRuntime(cmd, async (kw) => {
        const r = await kw.verifyKeys();
        const counts = { trusted: 0, dead: 0, refused: 0, unchecked: 0 };
        for (const t of r.trust.values()) counts[t] += 1;
        const json = {
          ok: r.ok,
          checkedAt: r.checkedAt,
          counts,
          refused: r.refused,
          missingRows: r.missingRows,
        };
        output(cmd, json, () =>
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
    });

  keys
    .command('rotate')
    .description(
      'create the next key of a scope now (normal prepublish: it signs once every JWKS cache knows it)',
    )
    .requiredOption('--scope <scope>', 'the scope to rotate')
    .action(async (opts: { scope: string }, cmd: Command) => {
      await withRuntime(cmd, async (kw) => {
        const k = await kw.rotate(opts.scope, cliActor());
        const d = describeKey(k, kw.keyState(k));
        output(cmd, d, () => `created ${d.kid} in scope ${d.scope}; it signs from ${iso(d.activateAt)}`);
      });
    });

  keys
    .command('revoke')
    .description(
      'revoke a key now: it leaves the JWKS, stops signing and verifying, and its HSM objects are destroyed; ' +
        'a replacement is made if needed',
    )
    .argument('<kid>')
    .requiredOption('--reason <text>', 'why (recorded in the audit log)')
    .action(async (kid: string, opts: { reason: string }, cmd: Command) => {
      await withRuntime(cmd, async (kw) => {
        const r = await kw.revoke(kid, opts.reason, cliActor());
        const result = {
          revoked: describeKey(r.revoked, kw.keyState(r.revoked)),
          destroyed: r.destroyed,
          replacement: r.replacement ? describeKey(r.replacement, kw.keyState(r.replacement)) : null,
        };
        output(cmd, result, () =>
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
    });
  return keys;
}
