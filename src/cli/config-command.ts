import { Command } from 'commander';
import { formatDuration } from '../policy/duration';
import { globals, loadConfigFor, output, table } from './io';
import { defaultConfigPath } from '../config/load-config';
import { tlsServerOptions } from '../config/tls-options';

/** `keywarden config check`: validates the whole file and prints the result. */
export function configCommand(): Command {
  const config = new Command('config').description('inspect the configuration');
  config
    .command('check')
    .description(
      'validate the config file (and the server.tls certificate, key and client CAs) and print every problem at once (exit 3 if invalid)',
    )
    .action((_opts, cmd: Command) => {
      const c = loadConfigFor(cmd);
      // The TLS files as `serve` reads them: missing, unreadable, mismatched, expired (exit 3).
      tlsServerOptions(c, new Date());
      output(
        cmd,
        {
          valid: true,
          source: c.source,
          store: c.store.url.startsWith('sqlite:') ? c.store.url : 'postgres',
          tls: c.server.tls ?? null,
          backends: Object.values(c.backends).map((b) => ({ name: b.name, type: b.type })),
          scopes: c.scopes.map((s) => ({
            name: s.name,
            issuer: s.issuer,
            alg: s.alg,
            backend: s.backend,
            policy: s.policy,
          })),
        },
        () =>
          `${c.source}: valid\n\n` +
          table(
            ['scope', 'alg', 'backend', 'prepublish', 'activeFor', 'verifyGrace', 'maxTokenTtl', 'issuer'],
            c.scopes.map((s) => [
              s.name,
              s.alg,
              s.backend,
              formatDuration(s.policy.prepublishSeconds),
              formatDuration(s.policy.activeForSeconds),
              formatDuration(s.policy.verifyGraceSeconds),
              formatDuration(s.policy.maxTokenTtlSeconds),
              s.issuer,
            ]),
          ),
      );
    });
  config
    .command('path')
    .description('print the config file path that would be used')
    .action((_o, cmd: Command) => {
      process.stdout.write(`${globals(cmd).config ?? defaultConfigPath()}\n`);
    });
  return config;
}
