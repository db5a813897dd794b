/**
 * A real keywarden daemon for end-to-end tests: a fresh SoftHSM2 token, a temp config with the
 * given scopes, `keywarden init`, then `keywarden serve` as a child process on a free loopback
 * port. Tests talk to it over HTTP and drive it with the real CLI (`cli(args)`).
 *
 * Always `await daemon.stop()` in an after hook. As a backstop, children still alive when the
 * test process exits are killed.
 */
import { cliCommand } from './cli';
import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpsGet } from 'node:https';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/load-config';
import { openRuntime, type Runtime } from '../../src/main';
import type { LifecycleContext } from '../../src/lifecycle/context';
import type { KeyRecord } from '../../src/policy/key';
import { pickSigningKey } from '../../src/policy/next-actions';
import type { KeywardenConfig } from '../../src/policy/scope';
import { freePort } from './free-port';
import { testConfigDocument, type TestScope } from './runtime';
import { createSoftHsmToken, type SoftHsmToken } from './softhsm';

const REPO_ROOT = resolve(__dirname, '..', '..');

/** A daemon scope: a TestScope, on the token's `hsm` backend unless `backend` names another. */
export type DaemonScope = TestScope & { backend?: string };

export interface DaemonOptions {
  /** Scopes; an issuer defaults to `<baseUrl>/scopes/<name>`, so discovery works as deployed. */
  scopes: DaemonScope[];
  /** server.keyRefreshSeconds (key cache and client-auth poll interval); default 1. */
  keyRefreshSeconds?: number;
  /** server.bodyLimitBytes; default the config default (65536). */
  bodyLimitBytes?: number;
  /** server.keyEvents (the key-set change streams); default the config defaults. */
  keyEvents?: { heartbeatSeconds?: number; maxConnectionsPerAddress?: number; maxConnections?: number };
  /** Daemon log level (its output is kept for failure messages); default warn. */
  logLevel?: string;
  /**
   * `serve --workers N`; default 1: one process, so per-process state (metrics, caches) is
   * what a test observes, and a 2-core machine is not oversubscribed.
   */
  workers?: number;
  /** server.workerHeader (`x-keywarden-worker` on every answer); default false. */
  workerHeader?: boolean;
  /**
   * The config's `admin` section (e.g. a socket in a directory other users can reach, in their
   * group); default: `admin.sock` in the token directory, in the group of the user tests run as.
   */
  admin?: { socket: { path: string; group: string | null } | null };
  /** The store (`store.url` in the config); default a SQLite file in the token directory. */
  storeUrl?: string;
  /**
   * More entries for the config's `backends` (as written in YAML, e.g. an `azure` backend), next
   * to the SoftHSM2 token's `hsm`; scopes name them with `backend`.
   */
  backends?: Record<string, Record<string, unknown>>;
  /**
   * Extra environment for `init`, `serve` and every `cli()` call (e.g. a managed identity's
   * IDENTITY_ENDPOINT); an undefined value removes that variable from the child's environment.
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Loads another module for the token's `hsm` backend: given the fresh token, returns the
   * backend's `module` and `moduleEnv` (e.g. p11-kit's client and the address of a `p11-kit
   * server` exporting the token, test/helpers/p11kit-server.ts) and a close() that stop() runs
   * once the daemon has ended. Default: the daemon loads libsofthsm2.so itself.
   */
  hsmModule?: (token: SoftHsmToken) => Promise<HsmModule>;
  /**
   * HTTPS: `server.tls` as written in the config (certFile, keyFile, optional clientCaFile), and
   * `trust`, the PEM CA certificate the test's clients trust. The base URL (and so every default
   * issuer) is then https.
   */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string; operatorCaFile?: string; trust: string };
}

/** What DaemonOptions.hsmModule provides. */
export interface HsmModule {
  module: string;
  moduleEnv: Record<string, string>;
  close(): Promise<void>;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Daemon {
  baseUrl: string;
  /** The `keywarden serve` process (with --workers N, the cluster primary): e.g. for SIGHUP. */
  pid: number;
  configPath: string;
  config: KeywardenConfig;
  token: SoftHsmToken;
  issuer(scope: string): string;
  jwksUrl(scope: string): string;
  /**
   * Runs the real CLI against this daemon's config: `keywarden -c <config> ...args`, with the
   * daemon's extra environment (DaemonOptions.env) plus `opts.env`. Commands go through the
   * daemon's admin socket, as an operator's do; `--local` in `args` works on the store directly
   * (e.g. after shutdown()).
   */
  cli(args: string[], opts?: { input?: string; env?: NodeJS.ProcessEnv }): Promise<CliResult>;
  /**
   * Opens an in-process runtime on the same store and token (as a second keywarden process
   * would): tests use it to reach key rows and the backend, e.g. to sign forged inputs with a
   * scope's real key. Close it before stop().
   */
  openRuntime(): Promise<Runtime>;
  /** The daemon's recent output, for assertion messages. */
  output(): string;
  /**
   * SIGTERM (SIGKILL after 10 s) and wait for the serve process to end, keeping the token, config
   * and store, so the CLI can inspect what the daemon left behind. Resolves with its exit code.
   */
  shutdown(): Promise<number | null>;
  /** shutdown(), then removes the token directory (store and config with it). */
  stop(): Promise<void>;
}

export { freePort };

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function runCli(
  configPath: string,
  args: string[],
  input?: string,
  timeoutMs = 120_000,
  env: NodeJS.ProcessEnv = {},
): Promise<CliResult> {
  return new Promise((res, rej) => {
    const [cmd, ...pre] = cliCommand();
    const child = spawn(cmd!, [...pre, '-c', configPath, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, KEYWARDEN_CLI_MAIN: '1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      rej(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      live.delete(child);
      res({ code, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/** The status of a GET over HTTPS trusting `ca` (the global fetch takes no CA). */
function httpsStatus(url: string, ca: string): Promise<number> {
  return new Promise((res, rej) => {
    const req = httpsGet(url, { ca }, (r) => {
      r.resume();
      res(r.statusCode ?? 0);
    });
    req.on('error', rej);
  });
}

async function waitForHealth(
  baseUrl: string,
  child: ChildProcess,
  output: () => string,
  trust?: string,
): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`keywarden serve exited (${child.exitCode ?? child.signalCode}):\n${output()}`);
    }
    try {
      if (trust !== undefined) {
        if ((await httpsStatus(`${baseUrl}/healthz`, trust)) === 200) return;
        throw new Error('not healthy yet');
      }
      const r = await fetch(`${baseUrl}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`keywarden serve did not become healthy in 60 s:\n${output()}`);
}

/** Creates a token and config, runs `init`, starts `serve`, and waits for /healthz. */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const token = await createSoftHsmToken();
  let child: ChildProcess | null = null;
  let hsm: HsmModule | null = null;
  try {
    if (opts.hsmModule) hsm = await opts.hsmModule(token);
    await writeFile(join(token.dir, 'user-pin'), token.pin, { mode: 0o600 });
    const port = await freePort();
    const baseUrl = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    const scopes = opts.scopes.map((s) => ({ ...s, issuer: s.issuer ?? `${baseUrl}/scopes/${s.name}` }));
    const base = testConfigDocument(token, scopes, {
      ...(opts.storeUrl !== undefined ? { store: { url: opts.storeUrl } } : {}),
      ...(opts.admin !== undefined ? { admin: opts.admin } : {}),
      logLevel: opts.logLevel ?? 'warn',
      server: {
        host: '127.0.0.1',
        port,
        keyRefreshSeconds: opts.keyRefreshSeconds ?? 1,
        ...(opts.bodyLimitBytes !== undefined ? { bodyLimitBytes: opts.bodyLimitBytes } : {}),
        ...(opts.keyEvents !== undefined ? { keyEvents: opts.keyEvents } : {}),
        ...(opts.workerHeader !== undefined ? { workerHeader: opts.workerHeader } : {}),
        ...(opts.tls
          ? {
              tls: {
                certFile: opts.tls.certFile,
                keyFile: opts.tls.keyFile,
                ...(opts.tls.clientCaFile ? { clientCaFile: opts.tls.clientCaFile } : {}),
                ...(opts.tls.operatorCaFile ? { operatorCaFile: opts.tls.operatorCaFile } : {}),
              },
            }
          : {}),
      },
    });
    const hsmBackend = hsm
      ? { ...base.backends.hsm, module: hsm.module, moduleEnv: hsm.moduleEnv }
      : base.backends.hsm;
    const doc = {
      ...base,
      backends: { ...base.backends, hsm: hsmBackend, ...opts.backends },
      scopes: base.scopes.map((s, i) => ({ ...s, backend: scopes[i]?.backend ?? s.backend })),
    };
    const extraEnv = opts.env ?? {};
    const configPath = join(token.dir, 'keywarden.yaml');
    // JSON is YAML: the real loader reads this file exactly as it reads an operator's.
    await writeFile(configPath, JSON.stringify(doc, null, 2), { mode: 0o600 });
    const config = loadConfig(configPath);

    const init = await runCli(configPath, ['init'], undefined, undefined, extraEnv);
    if (init.code !== 0)
      throw new Error(`keywarden init failed (${init.code}):\n${init.stderr}${init.stdout}`);

    let recent = '';
    const keep = (d: Buffer) => {
      recent = (recent + d.toString()).slice(-20_000);
    };
    const serveArgs = ['serve', '--workers', String(opts.workers ?? 1)];
    const [cmd, ...pre] = cliCommand();
    const serve = spawn(cmd!, [...pre, '-c', configPath, ...serveArgs], {
      cwd: REPO_ROOT,
      env: { ...process.env, KEYWARDEN_CLI_MAIN: '1', ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = serve;
    live.add(serve);
    serve.stdout.on('data', keep);
    serve.stderr.on('data', keep);
    let stopping = false;
    const exited = new Promise<number | null>((r) =>
      serve.once('exit', (code, signal) => {
        // A daemon that dies under a test takes every later test of the file with it; say why
        // once, where CI keeps it, instead of leaving only ECONNREFUSED behind.
        if (!stopping && code !== 0)
          process.stderr.write(
            `\n[test daemon ${serve.pid} exited unexpectedly: code ${code} signal ${signal}]\n${recent}\n`,
          );
        r(code);
      }),
    );
    await waitForHealth(baseUrl, serve, () => recent, opts.tls?.trust);

    const shutdown = async (): Promise<number | null> => {
      stopping = true;
      if (serve.exitCode === null && serve.signalCode === null) {
        serve.kill('SIGTERM');
        const killer = setTimeout(() => serve.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      live.delete(serve);
      return exited;
    };
    let stopped = false;
    return {
      baseUrl,
      pid: serve.pid as number,
      configPath,
      config,
      token,
      issuer: (scope) => config.scopes.find((s) => s.name === scope)?.issuer ?? `${baseUrl}/scopes/${scope}`,
      jwksUrl: (scope) => `${baseUrl}/scopes/${scope}/.well-known/jwks.json`,
      cli: (args, o = {}) => runCli(configPath, args, o.input, undefined, { ...extraEnv, ...o.env }),
      openRuntime: () => openRuntime(config, { log: pino({ level: 'silent' }) }),
      output: () => recent,
      shutdown,
      async stop() {
        if (stopped) return;
        stopped = true;
        await shutdown();
        await hsm?.close();
        await token.cleanup();
      },
    };
  } catch (e) {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    if (child) live.delete(child);
    await hsm?.close();
    await token.cleanup();
    throw e;
  }
}

const b64 = (v: object | string) =>
  Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/**
 * Signs an arbitrary header and payload with a keywarden key *through its backend*, the only
 * way anyone, attacker included, can use an HSM-held key. Tests use it to build tokens the
 * sign route would never issue (another scope's iss, a pending key, odd headers). A string
 * header or payload is used as raw JSON text (e.g. to repeat a member name).
 */
export async function signWithKey(
  ctx: LifecycleContext,
  key: KeyRecord,
  header: object | string,
  payload: object | string,
): Promise<string> {
  const input = `${b64(header)}.${b64(payload)}`;
  const backend = await ctx.backend(key.backendRef.backend);
  const sig = await backend.sign(key.backendRef, key.alg, Buffer.from(input, 'ascii'));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}

/** The scope's signing key now, straight from the store. */
export async function signingKeyOf(ctx: LifecycleContext, scope: string): Promise<KeyRecord> {
  const keys = (await ctx.keys.listByScope(scope)).filter((k) => k.status === 'ready');
  const key = pickSigningKey(keys, ctx.clock.now());
  if (!key || !key.kid) throw new Error(`scope ${scope} has no signing key`);
  return key;
}

/** A `keywarden serve` child process on an existing config (see startServe). */
export interface ServeProcess {
  baseUrl: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** Settles when the process has ended, with its exit code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Recent stdout + stderr, for assertion messages. */
  output(): string;
  /** Sends `signal` (default SIGKILL) and waits for the process to end. */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (SIGKILL after 10 s) and wait. */
  stop(): Promise<void>;
}

/**
 * Starts `keywarden -c <configPath> serve --port <port> ...args` from source with extra environment
 * (e.g. KEYWARDEN_STORE_URL, KEYWARDEN_TEST_CRASH_AT) and, unless `waitHealthy` is false, waits
 * for /healthz. Lets tests run several daemons on one config and store, kill and restart them.
 * The caller owns the config, token and store; stop() only ends the process.
 */
export async function startServe(
  configPath: string,
  opts: { port?: number; env?: NodeJS.ProcessEnv; waitHealthy?: boolean; args?: string[] } = {},
): Promise<ServeProcess> {
  const port = opts.port ?? (await freePort());
  const baseUrl = `http://127.0.0.1:${port}`;
  const [cmd, ...pre] = cliCommand();
  const child = spawn(
    cmd!,
    [...pre, '-c', configPath, 'serve', '--host', '127.0.0.1', '--port', String(port), ...(opts.args ?? [])],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, KEYWARDEN_CLI_MAIN: '1', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  live.add(child);
  let recent = '';
  const keep = (d: Buffer) => {
    recent = (recent + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      r({ code, signal });
    }),
  );
  const proc: ServeProcess = {
    baseUrl,
    port,
    pid: child.pid as number,
    child,
    exited,
    output: () => recent,
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    },
  };
  if (opts.waitHealthy !== false) {
    try {
      await waitForHealth(baseUrl, child, () => recent);
    } catch (e) {
      await proc.kill();
      throw e;
    }
  }
  return proc;
}
