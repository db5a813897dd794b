import { Command, CommanderError, Option } from 'commander';
import { packageVersion } from '../install-root';
import { KeywardenError } from '../policy/errors';
import { clientsCommand } from './clients-command';
import { auditCommand } from './audit-command';
import { configCommand } from './config-command';
import { EXIT, EXIT_CODE } from './exit-codes';
import { hsmCommand } from './hsm-command';
import { initCommand } from './init-command';
import { keysCommand } from './keys-command';
import { planCommand } from './plan-command';
import { jwksCommand, scopesCommand } from './scopes-command';
import { scanCommand } from './scan-command';
import { serveCommand } from './serve-command';
import { signCommand, verifyCommand } from './token-commands';

/** Levels pino knows; anything else is a usage error (exit 2), never an internal error. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The `keywarden` program: every command, with --help on each. */
export function buildProgram(): Command {
  const program = new Command('keywarden')
    .description('signing-key lifecycle manager: HSM-born JWT keys, rotation, per-scope JWKS, hard expiry')
    .version(packageVersion())
    .option('-c, --config <file>', 'config file (default: $KEYWARDEN_CONFIG or config/default.yaml)')
    .option('--json', 'machine-readable output')
    .addOption(
      new Option(
        '--log-level <level>',
        'log level of this command (logs go to stderr; serve: stdout)',
      ).choices(LOG_LEVELS),
    )
    .option(
      '--local',
      'work on the store and HSM directly, without the daemon (break-glass, tests; needs their credentials; ' +
        'audited as local)',
    )
    .option(
      '--socket <path>',
      "the daemon's admin socket (default: $KEYWARDEN_ADMIN_SOCKET, else admin.socket.path)",
    )
    .option(
      '--admin-url <url>',
      "a remote daemon's TLS listener (https://host:port, default $KEYWARDEN_ADMIN_URL), reached with an operator certificate",
    )
    .option('--operator-cert <file>', 'with --admin-url: your operator certificate (PEM)')
    .option('--operator-key <file>', 'with --admin-url: its private key (PEM)')
    .option('--admin-ca <file>', "with --admin-url: the CA of the daemon's server certificate (PEM)")
    .addHelpText(
      'after',
      '\nCommands on keys, clients, audit, tokens and the HSM run on the daemon through its admin socket\n' +
        '(admin.socket.path; your user must be in its group), so this machine needs neither the HSM PIN nor\n' +
        "the store's credentials. When the daemon cannot be reached they fail with exit 9 and never fall\n" +
        'back by themselves: --local runs them on the store and HSM directly. init and scan always run\n' +
        'directly (scan only with --local); config check, config path and scopes list read the config file only.',
    )
    .showHelpAfterError()
    .exitOverride();
  for (const c of [
    initCommand(),
    serveCommand(),
    configCommand(),
    scopesCommand(),
    keysCommand(),
    planCommand(),
    jwksCommand(),
    signCommand(),
    verifyCommand(),
    clientsCommand(),
    auditCommand(),
    hsmCommand(),
    scanCommand(),
  ]) {
    program.addCommand(c);
  }
  const override = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(override);
  };
  override(program);
  return program;
}

/** Runs the CLI; maps every error to a clear message on stderr and a meaningful exit code. */
export async function runCli(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version "fail" with exit code 0; usage errors were already printed.
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    if (e instanceof KeywardenError) {
      const json = argv.includes('--json');
      if (json)
        process.stdout.write(
          `${JSON.stringify({ error: { code: e.code, message: e.message, details: e.details } }, null, 2)}\n`,
        );
      process.stderr.write(`keywarden: ${e.code}: ${e.message}\n`);
      return EXIT_CODE[e.code];
    }
    process.stderr.write(`keywarden: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return EXIT.INTERNAL;
  }
}

if (require.main === module || process.env.KEYWARDEN_CLI_MAIN === '1') {
  // `serve` never resolves (it exits on SIGTERM/SIGINT); one-shot commands exit with their code.
  void runCli(process.argv).then((code) => process.exit(code));
}
