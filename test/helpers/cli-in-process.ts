import { runCli } from '../../src/cli/main';

export interface InProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

let running = false;

/**
 * Runs the CLI's `runCli` in this process, capturing what it writes to stdout and stderr (pino's
 * own stderr logging is not captured). Much cheaper than a child process, so property tests can
 * afford many runs. One at a time: it swaps the process's stdout/stderr writers and exit code.
 * Never use it for `serve`, or for arguments that read stdin (`-`).
 */
export async function runCliInProcess(args: string[]): Promise<InProcessResult> {
  if (running) throw new Error('runCliInProcess is not re-entrant');
  running = true;
  const out: string[] = [];
  const err: string[] = [];
  const writeOut = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  const capture =
    (into: string[]) =>
    (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    };
  process.stdout.write = capture(out) as typeof process.stdout.write;
  process.stderr.write = capture(err) as typeof process.stderr.write;
  const exitCodeBefore = process.exitCode;
  process.exitCode = undefined;
  try {
    const code = await runCli(['node', 'keywarden', ...args]);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = writeOut;
    process.stderr.write = writeErr;
    process.exitCode = exitCodeBefore;
    running = false;
  }
}
