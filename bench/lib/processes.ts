import { spawn, type ChildProcess } from 'node:child_process';
import { compiled } from './build';
import { REPO_ROOT } from './paths';

export { REPO_ROOT };
const live = new Set<ChildProcess>();

// The benchmark never leaves a server behind, whatever way it ends.
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const c of live) c.kill('SIGKILL');
    process.exit(130);
  });
}

export { freePort } from '../../test/helpers/free-port';

/** A server process started by the benchmark. */
export interface Server {
  name: string;
  baseUrl: string;
  pid: number;
  /** Its recent stdout+stderr. */
  output(): string;
  /** SIGTERM, then SIGKILL after 15 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface StartOptions {
  name: string;
  /** The compiled script (see build.ts) and its arguments. */
  args: string[];
  /** Node options before the script (e.g. --cpu-prof); cluster workers inherit them. */
  nodeArgs?: string[];
  env?: Record<string, string>;
  baseUrl: string;
  /** True once the server is ready (checked on every output chunk). */
  ready: (output: string) => boolean;
  timeoutMs?: number;
}

/** Starts a compiled entry point (keywarden or a yardstick) with plain node and waits until it is ready. */
export async function startServer(o: StartOptions): Promise<Server> {
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), ...o.args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let all = '';
  let recent = '';
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      live.delete(child);
      r(code);
    }),
  );
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`${o.name} did not become ready in time:\n${recent}`));
    }, o.timeoutMs ?? 180_000);
    const check = (d: Buffer) => {
      const s = d.toString();
      recent = (recent + s).slice(-20_000);
      if (all !== null) {
        all += s;
        if (o.ready(all)) {
          all = '';
          clearTimeout(timer);
          res();
        }
      }
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      rej(new Error(`${o.name} exited (${code ?? signal}) before it was ready:\n${recent}`));
    });
  });
  // After readiness only the recent output is kept.
  child.stdout!.removeAllListeners('data');
  child.stderr!.removeAllListeners('data');
  const keep = (d: Buffer) => (recent = (recent + d.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return {
    name: o.name,
    baseUrl: o.baseUrl,
    pid: child.pid!,
    output: () => recent,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const code = await exited;
        clearTimeout(t);
        return code;
      }
      return child.exitCode;
    },
  };
}

/** Path of a compiled yardstick server script. */
export const serverScript = (name: string) => compiled(`bench/servers/${name}.ts`);

/** Starts a yardstick from bench/servers/ with its config as JSON in BENCH_SERVER_CONFIG. */
export async function startYardstick(
  name: string,
  script: string,
  config: Record<string, unknown> & { port: number },
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<Server> {
  return startServer({
    name,
    args: [serverScript(script)],
    nodeArgs,
    env: { ...env, BENCH_SERVER_CONFIG: JSON.stringify(config) },
    baseUrl: `http://127.0.0.1:${config.port}`,
    ready: (out) => /^READY$/m.test(out),
  });
}

/**
 * Runs a compiled bench script (`args[0]` is its repository .ts path) to completion, passing its
 * stderr through, and returns the JSON on its `RESULT ` line: for measurements that need a
 * process of their own.
 */
export function runChild<T>(args: string[], env: Record<string, string> = {}): Promise<T> {
  return new Promise((res, rej) => {
    const [script, ...rest] = args;
    const child = spawn(process.execPath, [compiled(script!), ...rest], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    live.add(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', rej);
    child.on('close', (code) => {
      live.delete(child);
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) rej(new Error(`${args.join(' ')} failed (${code}): ${out.slice(-2000)}`));
      else res(JSON.parse(line.slice('RESULT '.length)) as T);
    });
  });
}
