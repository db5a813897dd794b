/**
 * SoftHSM2 behind p11-kit's RPC server, for tests and benchmarks: `p11-kit server` exports a
 * token made by createSoftHsmToken on a unix socket in a temp dir, and a keywarden backend loads
 * p11-kit's client module with `moduleEnv: { P11_KIT_SERVER_ADDRESS }` instead of
 * libsofthsm2.so. The deployment shape of config/default.yaml, the container and the systemd
 * units (libsofthsm2.so never in keywarden's address space).
 *
 * Always `await server.stop()` (after the clients closed); as a backstop, servers still running
 * when the test process exits are killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { SoftHsmToken } from './softhsm';

/** Where distributions put p11-kit's RPC client module (package p11-kit-modules); P11KIT_CLIENT_MODULE overrides. */
const CLIENT_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so',
  '/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so',
  '/usr/lib64/pkcs11/p11-kit-client.so',
  '/usr/lib/pkcs11/p11-kit-client.so',
];

export interface P11KitServer {
  /** p11-kit's client module: the `module` of a keywarden backend that uses this server. */
  modulePath: string;
  /** The backend's `moduleEnv`: where the client module connects. */
  moduleEnv: { P11_KIT_SERVER_ADDRESS: string };
  socketPath: string;
  /** The `p11-kit server` process; each client connection gets a `p11-kit-remote` child of it. */
  pid: number;
  /** The pids of its live children (one p11-kit-remote per connected client process). */
  remotePids(): number[];
  /** Its recent stderr, for assertion messages. */
  output(): string;
  /** SIGTERM (SIGKILL after 5 s), waits for it, removes the socket's temp dir. */
  stop(): Promise<void>;
}

/** Path of p11-kit's client module; a clear error when p11-kit-modules is missing. */
export function p11KitClientModulePath(): string {
  const candidates = process.env.P11KIT_CLIENT_MODULE
    ? [process.env.P11KIT_CLIENT_MODULE]
    : CLIENT_CANDIDATES;
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `p11-kit-client.so not found (looked at ${candidates.join(', ')}). Install p11-kit ` +
        '(Debian/Ubuntu: apt-get install p11-kit p11-kit-modules) or set P11KIT_CLIENT_MODULE.',
    );
  }
  return found;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Children of `pid`, from /proc (no `ps` needed). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // ended while we looked
    }
  }
  return out;
}

/**
 * Starts `p11-kit server --foreground` for `token` (its SOFTHSM2_CONF in the server's environment
 * only) on a socket in a fresh temp dir, and resolves once it listens.
 */
export async function startP11KitServer(
  token: SoftHsmToken,
  opts: {
    /**
     * Listen here (a server started again on the address of one that ended, as a restarted
     * keywarden-hsm.service does); the caller then owns its directory. Default: a fresh temp dir.
     */
    socketPath?: string;
  } = {},
): Promise<P11KitServer> {
  const modulePath = p11KitClientModulePath();
  const ownDir = opts.socketPath === undefined;
  const dir = ownDir
    ? await mkdtemp(join(tmpdir(), 'keywarden-p11kit-'))
    : dirname(opts.socketPath as string);
  const socketPath = opts.socketPath ?? join(dir, 'pkcs11');
  const child = spawn(
    'p11-kit',
    [
      'server',
      '--foreground',
      '--name',
      socketPath,
      '--provider',
      token.modulePath,
      `pkcs11:token=${token.tokenLabel}`,
    ],
    {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...token.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  live.add(child);
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-10_000)));
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      live.delete(child);
      r();
    }),
  );
  try {
    // In the foreground the server prints its address once the socket listens.
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`p11-kit server did not listen within 10 s: ${stderr}`)),
        10_000,
      );
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (/^P11_KIT_SERVER_ADDRESS=/m.test(stdout)) {
          clearTimeout(timer);
          res();
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        const err = e as NodeJS.ErrnoException;
        rej(
          err.code === 'ENOENT'
            ? new Error(
                'p11-kit not found: install it (Debian/Ubuntu: apt-get install p11-kit p11-kit-modules)',
              )
            : e,
        );
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        rej(new Error(`p11-kit server exited (${code ?? signal}) at start: ${stderr}`));
      });
    });
  } catch (e) {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const pid = child.pid as number;
  let stopped = false;
  return {
    modulePath,
    moduleEnv: { P11_KIT_SERVER_ADDRESS: `unix:path=${socketPath}` },
    socketPath,
    pid,
    remotePids: () => childrenOf(pid),
    output: () => stderr,
    async stop() {
      if (stopped) return;
      stopped = true;
      // The server's SIGTERM ends its accept loop only; a p11-kit-remote child ends when its
      // client disconnects, or here.
      const remotes = childrenOf(pid);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(killer);
      }
      for (const r of remotes) {
        try {
          process.kill(r, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      if (ownDir) await rm(dir, { recursive: true, force: true });
      else await rm(socketPath, { force: true });
    },
  };
}
