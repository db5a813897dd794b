import { Command } from 'commander';
import { hsmCheck, hsmStatusOperation, toWire, type Wire } from '../admin';
import { hsmStatus, type HsmCheckReport, type HsmStatusReport } from '../lifecycle';
import { HSM_FINDING_KINDS } from '../policy/hsm-findings';
import { EXIT, EXIT_CODE } from './exit-codes';
import { globals, loadConfigFor, output, runOperation, table } from './io';

const flag = (v: boolean | undefined): string => (v === undefined ? '?' : v ? 'Y' : 'n');

type Listed = Wire<HsmCheckReport>['backends'][number]['objects'][number];

/** What a key may be used for, as its flags say: `sign`, `sign,decrypt`, ... ('?' none reported). */
function uses(o: Listed): string {
  const a = o.attributes;
  const flags: [string, boolean | undefined][] = [
    ['sign', a.sign],
    ['sign-recover', a.signRecover],
    ['decrypt', a.decrypt],
    ['unwrap', a.unwrap],
    ['derive', a.derive],
  ];
  if (flags.every(([, v]) => v === undefined)) return '?';
  return (
    flags
      .filter(([, v]) => v === true)
      .map(([name]) => name)
      .join(',') || 'none'
  );
}

const isKey = (o: Listed): boolean => o.class === 'private' || o.class === 'secret';

/** The `--help` list of finding kinds, from the catalogue docs/errors.md documents. */
function findingKindsHelp(): string {
  const kinds = Object.entries(HSM_FINDING_KINDS);
  const width = Math.max(...kinds.map(([k]) => k.length));
  return [
    '',
    'Finding kinds (any finding: exit 1; --json gives each with kind, subject, id, kid, message):',
    ...kinds.map(([kind, meaning]) => `  ${kind.padEnd(width)}  ${meaning}`),
    '',
    'Keys made before keywarden set CKA_MODIFIABLE/CKA_COPYABLE/CKA_SIGN_RECOVER are reported as',
    'modifiable and copyable (and can-sign-recover where the module defaults it on): rotate them.',
  ].join('\n');
}

function humanCheck(r: Wire<HsmCheckReport>): string {
  const parts: string[] = [];
  for (const b of r.backends) {
    if (b.error) {
      // Nothing was listed: "0 objects" would read as an empty token.
      parts.push(`backend ${b.backend}: NOT CHECKED: ${b.error.code}: ${b.error.message}`);
      continue;
    }
    parts.push(
      `backend ${b.backend} (${b.type}${b.allObjects ? ', every object' : ", keywarden's objects"}): ${b.objects.length} object(s)`,
    );
    if (b.objects.length > 0) {
      parts.push(
        table(
          ['class', 'label', 'id', 'type', 'sens', 'extr', 'aSens', 'nExtr', 'mod', 'copy', 'uses', 'kid'],
          b.objects.map((o) => [
            o.class,
            o.label,
            o.id.slice(0, 16),
            o.keyType ?? o.application,
            isKey(o) ? flag(o.attributes.sensitive) : '',
            isKey(o) ? flag(o.attributes.extractable) : '',
            isKey(o) ? flag(o.attributes.alwaysSensitive) : '',
            isKey(o) ? flag(o.attributes.neverExtractable) : '',
            b.allObjects ? flag(o.attributes.modifiable) : '',
            b.allObjects ? flag(o.attributes.copyable) : '',
            b.allObjects && isKey(o) ? uses(o) : '',
            o.kid?.slice(0, 12),
          ]),
        ),
      );
    }
  }
  parts.push(r.ok ? 'hsm check OK' : `hsm check FAILED: ${r.findings.length} finding(s)`);
  for (const f of r.findings) parts.push(`  ${f.kind}: ${f.message}`);
  return parts.join('\n');
}

function humanStatus(r: Wire<HsmStatusReport>): string {
  const parts: string[] = [];
  for (const b of r.backends) {
    const [first = '', ...rest] = b.summary;
    parts.push(`backend ${b.backend}: ${first}`, ...rest);
  }
  parts.push(
    `core dump limit of the answering process: ${r.coreDumpLimit ?? 'unknown'} ('serve' sets its own to 0)`,
  );
  return parts.join('\n');
}

/** `keywarden hsm status|check`. */
export function hsmCommand(): Command {
  const hsm = new Command('hsm').description('HSM status and key hygiene checks');

  hsm
    .command('status')
    .description(
      'module, slots, tokens and free space (no PIN needed), and the core-dump limit of the process that ' +
        'answers (the daemon, or this one with --local)',
    )
    .action(async (_o, cmd: Command) => {
      // With --local only the module is loaded (no PIN, no store): the way to look at a token
      // whose PIN or store is the problem. Through the daemon, the daemon's view.
      const r = globals(cmd).local
        ? toWire(hsmStatus(loadConfigFor(cmd)))
        : await runOperation(cmd, hsmStatusOperation, {});
      output(cmd, r, () => humanStatus(r));
    });

  hsm
    .command('check')
    .description(
      'list every object on the configured tokens; exit 1 if a private key is exportable or readable, ' +
        'serves another use than signing, can be modified or copied, an object is unlabelled, a key ' +
        'pair or seal is left partial, an object has no key row, or a dead key was not destroyed; ' +
        'exit 6 with the backend error (e.g. BACKEND_PIN_INCORRECT) when a backend cannot be opened or listed',
    )
    .addHelpText('after', findingKindsHelp)
    .action(async (_o, cmd: Command) => {
      const r = await runOperation(cmd, hsmCheck, {});
      output(cmd, r, () => humanCheck(r));
      // A backend that could not be checked is its error's exit status (a wrong PIN: 6), not
      // the "findings" answer (1): nothing was checked there.
      const unchecked = r.backends.find((b) => b.error)?.error;
      if (unchecked) process.exitCode = EXIT_CODE[unchecked.code];
      else if (!r.ok) process.exitCode = EXIT.NEGATIVE;
    });
  return hsm;
}
