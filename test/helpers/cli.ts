import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
const SOURCE_CLI = join(ROOT, 'src', 'cli', 'main.ts');
const BUILT_CLI = join(ROOT, 'bin', 'keywarden');

/**
 * The CLI under test: the built one (`bin/keywarden` -> dist/, what users run; scripts/test.sh
 * builds first), or the source through tsx with KEYWARDEN_TEST_FROM_SOURCE=1 (no build needed,
 * but each start costs a TypeScript transform).
 */
export function cliCommand(): string[] {
  if (
    process.env.KEYWARDEN_TEST_FROM_SOURCE === '1' ||
    !existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))
  ) {
    return [TSX, SOURCE_CLI];
  }
  return [process.execPath, BUILT_CLI];
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `keywarden` CLI (from source, via tsx) as a child process. */
export function runKeywarden(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = cliCommand();
    const child = spawn(cmd!, [...pre, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}
