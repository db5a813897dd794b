import { Command } from 'commander';
import {
  clientsAdd,
  clientsAddCertificate,
  clientsList,
  clientsRemove,
  clientsRotateSecret,
  clientsSeal,
  clientsShow,
  type Wire,
} from '../admin';
import type { CheckedClientSummary, ClientSummary, SealClientsReport } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { EXIT } from './exit-codes';
import { iso, output, readOptionFile, runOperation, table } from './io';

const collect = (v: string, prev: string[]) => [...prev, v];

/**
 * Turns the CLI's grant options into grants per scope. Two spellings, mixable:
 * - `--grant SCOPE:GRANTS` (repeatable), e.g. `--grant consumer:sign,verify --grant enterprise:verify`;
 * - `--scope SCOPE` (repeatable) with `--grant GRANTS` (no colon), which applies to every --scope.
 */
export function parseGrantOptions(
  scopes: readonly string[],
  grants: readonly string[],
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const add = (scope: string, list: string) => {
    const names = list.split(',').map((g) => g.trim());
    if (scope.length === 0 || names.some((g) => g.length === 0)) {
      throw new KeywardenError(
        'REQUEST_INVALID',
        `bad grant "${scope}:${list}" (expected SCOPE:sign,verify)`,
      );
    }
    out[scope] = [...(out[scope] ?? []), ...names];
  };
  const unscoped: string[] = [];
  for (const g of grants) {
    const i = g.indexOf(':');
    if (i >= 0) add(g.slice(0, i), g.slice(i + 1));
    else unscoped.push(g);
  }
  if (unscoped.length > 0 && scopes.length === 0) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      `--grant ${unscoped[0]} names no scope: use --grant SCOPE:${unscoped[0]} or add --scope SCOPE`,
    );
  }
  if (scopes.length > 0 && unscoped.length === 0) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      '--scope needs a --grant without a scope prefix (e.g. --scope consumer --grant sign,verify)',
    );
  }
  for (const s of scopes) for (const g of unscoped) add(s, g);
  return out;
}

const grantsText = (g: Wire<ClientSummary['grants']>) =>
  Object.entries(g)
    .map(([scope, list]) => `${scope}:${list.join(',')}`)
    .join(' ');

/** `trusted`, or `refused (<reason>)`. */
const trustText = (c: Wire<CheckedClientSummary>) =>
  c.trust === 'trusted' ? 'trusted' : `refused (${c.reason})`;

function humanClient(c: Wire<CheckedClientSummary>): string {
  return [
    `name:     ${c.name}`,
    `id:       ${c.id}`,
    `auth:     ${c.auth.join(', ')}`,
    ...(c.certSpkiSha256 ? [`cert:     SPKI SHA-256 ${c.certSpkiSha256}`] : []),
    `grants:   ${grantsText(c.grants)}`,
    `created:  ${iso(c.createdAt)}`,
    `updated:  ${iso(c.updatedAt)}`,
    `trust:    ${trustText(c)}`,
    c.trust === 'trusted' ? `sealed by audit key ${c.sealedBy}` : `          ${c.detail}`,
  ].join('\n');
}

function humanSealReport(r: Wire<SealClientsReport>): string {
  if (r.clients.length === 0) return 'no clients';
  const rows = table(
    ['name', 'id', 'grants', 'created', 'was', r.dryRun ? 'would' : 'done'],
    r.clients.map((c) => [
      c.name,
      c.id,
      grantsText(c.grants),
      iso(c.createdAt),
      c.was,
      r.dryRun && (c.action === 'sealed' || c.action === 'resealed') ? c.action.replace(/ed$/, '') : c.action,
    ]),
  );
  const notes = r.clients.filter((c) => c.detail).map((c) => `${c.name}: ${c.detail}`);
  const done = r.clients.filter((c) => c.action === 'sealed' || c.action === 'resealed').length;
  return [
    rows,
    ...notes,
    r.dryRun
      ? `dry run: ${done} client(s) would be sealed; nothing was changed`
      : `${done} client(s) sealed${r.kid ? ` by audit key ${r.kid}` : ''}`,
  ].join('\n');
}

/** Prints a newly issued secret: on stdout only, once, with a warning that it is not stored. */
function printSecret(cmd: Command, issued: Wire<ClientSummary> & { secret: string }, verb: string): void {
  output(cmd, issued, () =>
    [
      `${verb} client ${issued.name} (id ${issued.id}); grants: ${grantsText(issued.grants)}`,
      'secret (shown once; only its hash is stored; send it as "Authorization: Bearer <secret>"):',
      issued.secret,
    ].join('\n'),
  );
}

/** `keywarden clients add|list|show|seal|remove|rotate-secret`: API clients and their grants per scope. */
export function clientsCommand(): Command {
  const clients = new Command('clients').description('manage API clients of the sign/verify routes');

  clients
    .command('add')
    .description(
      'create an API client with grants per scope: print its secret once, or bind it to a client certificate (--cert)',
    )
    .argument('<name>', 'a unique name (letters, digits, . _ -)')
    .option('--grant <grant>', 'SCOPE:sign[,verify], or sign[,verify] with --scope (repeatable)', collect, [])
    .option('--scope <scope>', 'a scope the unprefixed --grant applies to (repeatable)', collect, [])
    .option(
      '--cert <file>',
      "bind the client to this PEM client certificate's public key (mutual TLS) instead of issuing a secret",
    )
    .addHelpText(
      'after',
      '\nExamples:\n  keywarden clients add billing --grant consumer:sign,verify --grant enterprise:verify\n' +
        '  keywarden clients add gateway --scope consumer --scope enterprise --grant verify\n' +
        '  keywarden clients add payments --grant consumer:sign --cert payments.crt\n\n' +
        'With --cert the client has no secret: it connects over TLS with that certificate (issued by a CA\n' +
        'in server.tls.clientCaFile, which must hold its direct issuer) and is bound to its public key\n' +
        '(SPKI SHA-256), so a certificate renewed over the same key stays bound; a new key needs a new\n' +
        'client. The binding is sealed by the audit key like the rest of the row.',
    )
    .action(async (name: string, opts: { grant: string[]; scope: string[]; cert?: string }, cmd: Command) => {
      if (opts.grant.length === 0)
        throw new KeywardenError('REQUEST_INVALID', 'at least one --grant is required');
      const grants = parseGrantOptions(opts.scope, opts.grant);
      if (opts.cert === undefined) {
        printSecret(cmd, await runOperation(cmd, clientsAdd, { name, grants }), 'created');
        return;
      }
      // The certificate is read here and checked against server.tls.clientCaFile where the
      // client is made (the daemon's config, or --local's).
      const certificatePem = readOptionFile('--cert', opts.cert).toString('utf8');
      const c = await runOperation(cmd, clientsAddCertificate, { name, grants, certificatePem });
      output(cmd, c, () =>
        [
          `created client ${c.name} (id ${c.id}); grants: ${grantsText(c.grants)}`,
          `bound to the client certificate's public key (SPKI SHA-256 ${c.certSpkiSha256}); no secret`,
          ...(c.clientCaConfigured
            ? []
            : [
                'note: server.tls.clientCaFile is not set: no daemon accepts client certificates until it is',
              ]),
        ].join('\n'),
      );
    });

  clients
    .command('list')
    .description('list API clients, their grants and whether an HSM key vouches for each (never secrets)')
    .action(async (_o, cmd: Command) => {
      const all = await runOperation(cmd, clientsList, {});
      output(cmd, all, () =>
        all.length === 0
          ? 'no clients'
          : table(
              ['name', 'id', 'auth', 'grants', 'created', 'trust'],
              all.map((c) => [
                c.name,
                c.id,
                c.auth.join('+'),
                grantsText(c.grants),
                iso(c.createdAt),
                trustText(c),
              ]),
            ),
      );
    });

  clients
    .command('show')
    .description('show one API client (by name or id)')
    .argument('<client>')
    .action(async (nameOrId: string, _o, cmd: Command) => {
      const c = await runOperation(cmd, clientsShow, { client: nameOrId });
      output(cmd, c, () => humanClient(c));
    });

  clients
    .command('remove')
    .description('remove an API client; running daemons refuse it within server.keyRefreshSeconds')
    .argument('<client>')
    .action(async (nameOrId: string, _o, cmd: Command) => {
      const r = await runOperation(cmd, clientsRemove, { client: nameOrId });
      output(cmd, r, () => `removed client ${r.removed.name} (id ${r.removed.id})`);
    });

  clients
    .command('seal')
    .description(
      'vouch for API client rows: seal them with the audit key (the upgrade step for clients made before sealing)',
    )
    .argument('[clients...]', 'clients by name or id')
    .option('--all', 'every client without a seal, or with a seal by an audit key that no longer signs')
    .option(
      '--force',
      'also vouch for named clients whose seal does not verify (rows changed outside keywarden)',
    )
    .option('--dry-run', 'print what would be sealed, change nothing')
    .addHelpText(
      'after',
      '\nA row without a seal is refused (401): the daemon cannot tell a client made before sealing from a\n' +
        'row written into the store by someone else, so only an operator can vouch for it. Check what is\n' +
        'printed first:\n  keywarden clients seal --all --dry-run\n  keywarden clients seal --all',
    )
    .action(
      async (names: string[], opts: { all?: boolean; force?: boolean; dryRun?: boolean }, cmd: Command) => {
        const report = await runOperation(cmd, clientsSeal, {
          clients: names,
          all: opts.all === true,
          force: opts.force === true,
          dryRun: opts.dryRun === true,
        });
        output(cmd, report, () => humanSealReport(report));
        // Clients left refused are a negative answer for scripts.
        if (report.clients.some((c) => c.action === 'skipped')) process.exitCode = EXIT.NEGATIVE;
      },
    );

  clients
    .command('rotate-secret')
    .description(
      'issue a new secret for a client; the old one stops working like a removed client (not for --cert clients)',
    )
    .argument('<client>')
    .action(async (nameOrId: string, _o, cmd: Command) => {
      printSecret(cmd, await runOperation(cmd, clientsRotateSecret, { client: nameOrId }), 'new secret for');
    });

  return clients;
}
