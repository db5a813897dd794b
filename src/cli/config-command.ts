import { Command } from 'commander';
import { environmentProblems } from '../config/check-environment';
import { checkDeep, type DeepCheckItem } from '../main';
import { ConfigInvalidError, type ConfigProblem } from '../policy/errors';
import { formatDuration } from '../policy/duration';
import type { KeywardenConfig } from '../policy/scope';
import { EXIT } from './exit-codes';
import { globals, loadConfigFor, output, table } from './io';
import { defaultConfigPath } from '../config/load-config';
import { tlsServerOptions } from '../config/tls-options';

/** `keywarden config check`: validates the whole file and prints the result. */
export function configCommand(): Command {
  const config = new Command('config').description('inspect the configuration');
  config
    .command('check')
    .description(
      'validate the config file and what it needs on this machine (PIN variable or file, module file, ' +
        'the server.tls certificate, key and client CAs), ' +
        'printing every problem at once (exit 3 if any); --deep also loads each module and finds its ' +
        'token (no login), asks Key Vault, and inspects the store read-only (exit 1 on a problem found there)',
    )
    .option('--deep', 'also probe the backends and the store, with no side effect')
    .action(async (opts: { deep?: boolean }, cmd: Command) => {
      const c = loadConfigFor(cmd);
      const environment = environmentProblems(c);
      // The TLS files as `serve` reads them (missing, unreadable, mismatched, expired): exit 3 with the rest.
      const tls = tlsProblems(c);
      if (tls.length > 0) throw new ConfigInvalidError(c.source, [...tls, ...environment]);
      if (!opts.deep) {
        if (environment.length > 0) throw new ConfigInvalidError(c.source, environment);
        output(cmd, { valid: true, ...describeConfig(c) }, () => `${c.source}: valid\n\n${configTable(c)}`);
        return;
      }
      const checks = await checkDeep(c, environment);
      const problems = checks.filter((i) => i.status === 'problem').length;
      output(cmd, { valid: environment.length === 0, ...describeConfig(c), checks, problems }, () =>
        [
          `${c.source}: ${environment.length === 0 ? 'valid' : 'INVALID on this machine'}`,
          '',
          configTable(c),
          '',
          ...checks.map(humanCheck),
          problems === 0 ? 'deep check OK' : `deep check FAILED: ${problems} problem(s)`,
        ].join('\n'),
      );
      if (environment.length > 0) process.exitCode = EXIT.CONFIG;
      else if (problems > 0) process.exitCode = EXIT.NEGATIVE;
    });
  config
    .command('path')
    .description('print the config file path that would be used')
    .action((_o, cmd: Command) => {
      process.stdout.write(`${globals(cmd).config ?? defaultConfigPath()}\n`);
    });
  return config;
}

/** The problems `serve` would refuse the server.tls files for, or none. */
function tlsProblems(c: KeywardenConfig): readonly ConfigProblem[] {
  try {
    tlsServerOptions(c, new Date());
    return [];
  } catch (e) {
    if (e instanceof ConfigInvalidError) return e.problems;
    throw e;
  }
}

function describeConfig(c: KeywardenConfig) {
  return {
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
  };
}

function configTable(c: KeywardenConfig): string {
  return table(
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
  );
}

function humanCheck(i: DeepCheckItem): string {
  const mark = i.status === 'ok' ? 'ok     ' : i.status === 'note' ? 'note   ' : 'PROBLEM';
  return `${mark} ${i.subject}: ${i.code ? `${i.code}: ` : ''}${i.message}`;
}
