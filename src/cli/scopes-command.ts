import { Command } from 'commander';
import { formatDuration } from '../policy/duration';
import { scopesJwks, scopesShow } from '../admin';
import { loadConfigFor, output, runOperation, table } from './io';

export function scopesCommand(): Command {
  const scopes = new Command('scopes').description('list and inspect scopes');
  scopes
    .command('list')
    .description('list configured scopes')
    .action((_o, cmd: Command) => {
      const c = loadConfigFor(cmd);
      output(
        cmd,
        c.scopes.map((s) => ({
          name: s.name,
          issuer: s.issuer,
          alg: s.alg,
          backend: s.backend,
          audiences: s.audiences,
        })),
        () =>
          table(
            ['scope', 'alg', 'backend', 'issuer'],
            c.scopes.map((s) => [s.name, s.alg, s.backend, s.issuer]),
          ),
      );
    });
  scopes
    .command('show')
    .description("show a scope's config, its signing key and key counts by state")
    .argument('<scope>')
    .action(async (name: string, _o, cmd: Command) => {
      const s = await runOperation(cmd, scopesShow, { scope: name });
      const { signingKid, keysByState: counts } = s;
      output(cmd, s, () =>
        [
          `scope:      ${s.name}`,
          `issuer:     ${s.issuer}`,
          `audiences:  ${s.audiences.join(', ')}`,
          `alg:        ${s.alg} on backend ${s.backend}`,
          `schedule:   ${s.schedule}`,
          `policy:     prepublish ${formatDuration(s.policy.prepublishSeconds)}, active ${formatDuration(s.policy.activeForSeconds)}, grace ${formatDuration(s.policy.verifyGraceSeconds)}, max token ttl ${formatDuration(s.policy.maxTokenTtlSeconds)}`,
          `signing:    ${signingKid ?? 'NONE'}`,
          `keys:       ${
            Object.entries(counts)
              .map(([k, v]) => `${v} ${k}`)
              .join(', ') || 'none'
          }`,
        ].join('\n'),
      );
    });
  return scopes;
}

/** `keywarden jwks <scope>`: prints exactly what the JWKS route serves now. */
export function jwksCommand(): Command {
  return new Command('jwks')
    .description("print a scope's published JWKS as the daemon serves it")
    .argument('<scope>')
    .action(async (name: string, _o, cmd: Command) => {
      const jwks = await runOperation(cmd, scopesJwks, { scope: name });
      process.stdout.write(`${JSON.stringify(jwks, null, 2)}\n`);
    });
}
