/**
 * System users and groups for tests that run the CLI as someone other than root (the admin
 * socket's group is its access control). Created idempotently, kept between runs: they own no
 * files and have no shell or home.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { cliCommand, type CliResult } from './cli';

const REPO_ROOT = resolve(__dirname, '..', '..');

function getent(db: 'group' | 'passwd', name: string): string[] | null {
  try {
    return execFileSync('getent', [db, name], { encoding: 'utf8' }).trim().split(':');
  } catch {
    return null;
  }
}

/** The gid of `name`, creating the group (a system group) when it is missing. */
export function ensureGroup(name: string): number {
  if (!getent('group', name)) execFileSync('groupadd', ['--system', name]);
  return Number(getent('group', name)![2]);
}

/**
 * The uid of a system user `name` with no home and no login shell, in exactly the supplementary
 * `groups` given (created when missing, corrected when it exists).
 */
export function ensureUser(name: string, groups: string[] = []): number {
  if (!getent('passwd', name)) {
    execFileSync('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      '--user-group',
      name,
    ]);
  }
  execFileSync('usermod', ['-G', groups.join(','), name]);
  return Number(getent('passwd', name)![2]);
}

/** True when the tests can create users and switch to them (root, with setpriv). */
export function canSwitchUsers(): boolean {
  try {
    execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  return process.getuid?.() === 0;
}

/**
 * Runs the real `keywarden` CLI as `user` (its uid, primary gid and supplementary groups, via
 * setpriv), with a minimal environment: nothing of root's leaks to it.
 */
export function runKeywardenAs(
  user: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  const [cmd, ...pre] = cliCommand();
  return new Promise((res, rej) => {
    const child = spawn(
      'setpriv',
      [`--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', cmd!, ...pre, ...args],
      {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: '/nonexistent',
          KEYWARDEN_CONFIG: join('/nonexistent', 'keywarden.yaml'),
          ...opts.env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}
