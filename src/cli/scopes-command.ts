import { Command } from 'commander';
import { requireScope } from '../lifecycle/context';
import { formatDuration } from '../policy/duration';
import { effectiveState } from '../policy/key-state';
import { pickSigningKey } from '../policy/next-actions';
import { loadConfigFor, output, table, withRuntime } from './io';

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
      await withRuntime(cmd, async ({ ctx }) => {
        const s = requireScope(ctx, name);
        const now = ctx.clock.now();
        const keys = (await ctx.keys.listByScope(s.name)).filter((k) => k.status === 'ready');
        const counts: Record<string, number> = {};
        for (const k of keys) counts[effectiveState(k, now)] = (counts[effectiveState(k, now)] ?? 0) + 1;
        const signing = pickSigningKey(keys, now);
        output(cmd, { ...s, signingKid: signing?.kid ?? null, keysByState: counts }, () =>
          [
            `scope:      ${s.name}`,
            `issuer:     ${s.issuer}`,
            `audiences:  ${s.audiences.join(', ')}`,
            `alg:        ${s.alg} on backend ${s.backend}`,
            `schedule:   ${s.schedule}`,
            `policy:     prepublish ${formatDuration(s.policy.prepublishSeconds)}, active ${formatDuration(s.policy.activeForSeconds)}, grace ${formatDuration(s.policy.verifyGraceSeconds)}, max token ttl ${formatDuration(s.policy.maxTokenTtlSeconds)}`,
            `signing:    ${signing?.kid ?? 'NONE'}`,
            `keys:       ${
              Object.entries(counts)
                .map(([k, v]) => `${v} ${k}`)
                .join(', ') || 'none'
            }`,
          ].join('\n'),
        );
      });
    });
  return scopes;
}

/** `keywarden jwks <scope>`: prints exactly what the JWKS route serves now. */
export function jwksCommand(): Command {
  return new Command('jwks')
    .description("print a scope's published JWKS as the daemon serves it")
    .argument('<scope>')
    .action(async (name: string, _o, cmd: Command) => {
      await withRuntime(cmd, async ({ ctx }) => {
        const s = requireScope(ctx, name);
        const view = ctx.cache.view(s.name);
        const body = view ? ctx.cache.jwks(view).body : '{"keys":[]}';
        process.stdout.write(`${JSON.stringify(JSON.parse(body), null, 2)}\n`);
      });
    });
}
