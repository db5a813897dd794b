import { Command } from 'commander';
import type { ScanProgress } from '../lifecycle';
import { KeywardenError } from '../policy/errors';
import { EXIT } from './exit-codes';
import { globals, localActor, output, table, withRuntime } from './io';

/** A one-line progress bar with bytes/s on stderr, only on a terminal and never with --json. */
function progressBar(enabled: boolean): { update(p: ScanProgress): void; done(): void } {
  const started = Date.now();
  let last = 0;
  return {
    update(p) {
      if (!enabled || Date.now() - last < 200) return;
      last = Date.now();
      const mb = (n: number) => (n / 1048576).toFixed(0);
      const rate = p.bytesDone / 1048576 / Math.max((Date.now() - started) / 1000, 0.001);
      const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100;
      process.stderr.write(
        `\rscanning ${pct}%  ${mb(p.bytesDone)}/${mb(p.bytesTotal)} MiB  ${rate.toFixed(0)} MiB/s   `,
      );
    },
    done() {
      if (enabled) process.stderr.write('\n');
    },
  };
}

/** `keywarden scan`: find private-key material of managed keys in files and dumps (I4). */
export function scanCommand(): Command {
  return new Command('scan')
    .description(
      'find private-key material of managed keys (and, with --all-private-keys, any private key) in files, directories and core dumps; exit 0 nothing found, 1 findings, 2 error',
    )
    .argument('<path...>', 'files or directories (recursive)')
    .option('--all-private-keys', 'also report private keys that match no managed key')
    .option('--revoke', 'revoke every matched key that is still published (the finding is the audit reason)')
    .addHelpText(
      'after',
      '\nscan reads files on this machine and matches them against the store, so it runs with --local\n' +
        '(the store and HSM credentials); it is not offered through the daemon.',
    )
    .action(async (paths: string[], opts: { allPrivateKeys?: boolean; revoke?: boolean }, cmd: Command) => {
      if (!globals(cmd).local) {
        throw new KeywardenError(
          'REQUEST_INVALID',
          'scan reads files on this machine and matches them against the store directly: run it with --local',
        );
      }
      await withRuntime(cmd, async (kw) => {
        const bar = progressBar(!globals(cmd).json && process.stderr.isTTY === true);
        let r;
        try {
          r = await kw.scan(paths, {
            allPrivateKeys: opts.allPrivateKeys,
            revoke: opts.revoke,
            actor: localActor(),
            onProgress: (p) => bar.update(p),
          });
        } finally {
          bar.done();
        }
        if (r.files === 0 && r.errors.length > 0) {
          throw new KeywardenError('SCAN_ERROR', r.errors.map((e) => `${e.file}: ${e.message}`).join('; '));
        }
        output(cmd, r, () =>
          [
            `scanned ${r.files} file(s), ${(r.bytesScanned / 1048576).toFixed(1)} MiB: ${r.findings.length} finding(s)`,
            r.findings.length > 0
              ? table(
                  ['file', 'offset', 'encoding', 'key', 'kid', 'scope', 'state'],
                  r.findings.map((f) => [
                    f.file,
                    f.offset,
                    f.encoding,
                    f.keyType,
                    f.match?.kid ?? '(unmanaged)',
                    f.match?.scope,
                    f.match?.state,
                  ]),
                )
              : '',
            ...r.revoked.map(
              (x) =>
                `revoked ${x.kid} (scope ${x.scope})${x.replacementKid ? `; replacement ${x.replacementKid} active` : ''}`,
            ),
            ...r.notRevoked.map((x) => `not revoked ${x.kid}: ${x.reason}`),
            ...r.errors.map((e) => `error: ${e.file}: ${e.message}`),
          ]
            .filter((l) => l !== '')
            .join('\n'),
        );
        if (r.findings.length > 0) process.exitCode = EXIT.NEGATIVE;
        else if (r.errors.length > 0) process.exitCode = EXIT.USAGE;
      });
    });
}
