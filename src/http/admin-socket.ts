import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { KeywardenError } from '../policy/errors';
import type { AdminSocketConfig } from '../policy/scope';

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** The admin socket's file mode: owner (the daemon's user) and group read/write, nobody else. */
export const ADMIN_SOCKET_MODE = 0o660;

/** The socket's place and group, checked and cleared for binding (prepareAdminSocket). */
export interface PreparedAdminSocket {
  path: string;
  /** The group's name as configured (null: the daemon user's primary group). */
  group: string | null;
  gid: number | null;
}

const refuse = (message: string) => new KeywardenError('CONFIG_INVALID', `admin.socket: ${message}`);

/** The gid of a group name (NSS through getent, /etc/group if getent is missing) or a numeric gid. */
export function resolveGroupId(group: string): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  let line: string | undefined;
  try {
    line = execFileSync('getent', ['group', group], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      line = fs
        .readFileSync('/etc/group', 'utf8')
        .split('\n')
        .find((l) => l.startsWith(`${group}:`));
    }
    // getent exits 2 for an unknown group: line stays undefined.
  }
  const gid = line?.split(':')[2];
  if (gid === undefined || !/^[0-9]+$/.test(gid)) {
    throw refuse(
      `group ${group} does not exist: create it (groupadd --system ${group}) and add the operators ` +
        'and the daemon user to it, or set admin.socket.group',
    );
  }
  return Number(gid);
}

/** True when something accepts connections on the socket at `path` (a live daemon). */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true); // accepted the connection but slow: someone is there
    }, 2000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED') resolve(false);
      else reject(refuse(`cannot tell whether ${path} is in use (${e.code ?? e.message}); not removing it`));
    });
  });
}

/**
 * Checks the socket's path and group before the daemon opens anything, and removes a stale
 * socket a crashed daemon left behind. It never removes anything but a socket nobody answers
 * on, and never follows a symbolic link: a link, a file, a directory or a live socket at the
 * path stops the start with the reason.
 */
export async function prepareAdminSocket(cfg: AdminSocketConfig, log: Logger): Promise<PreparedAdminSocket> {
  const { path } = cfg;
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw refuse(`path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit for a unix socket`);
  }
  const gid = cfg.group === null ? null : resolveGroupId(cfg.group);
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw refuse(`cannot inspect ${path}: ${(e as Error).message}`);
    }
  }
  if (st) {
    if (st.isSymbolicLink()) throw refuse(`${path} is a symbolic link; refusing to follow or remove it`);
    if (!st.isSocket()) throw refuse(`${path} exists and is not a socket; refusing to remove it`);
    if (await socketAnswers(path)) {
      throw refuse(
        `${path} is in use by a running process (another keywarden daemon?); stop it, or give this ` +
          'daemon its own socket (admin.socket.path or KEYWARDEN_ADMIN_SOCKET)',
      );
    }
    fs.unlinkSync(path);
    log.warn({ path }, 'removed a stale admin socket (nothing answered on it)');
  }
  return { path, group: cfg.group, gid };
}

/**
 * Listens on the prepared socket: created with no access for anyone but the owner (umask), then
 * given its group and mode 0660 before the daemon says it serves. The socket file is removed
 * when the server closes.
 */
export async function listenOnAdminSocket(
  app: FastifyInstance,
  sock: PreparedAdminSocket,
  log: Logger,
): Promise<void> {
  let ino: number | null = null;
  app.addHook('onClose', async () => {
    try {
      // Only the socket this server made (a successor may already have bound the path).
      if (ino !== null && fs.lstatSync(sock.path).ino === ino) fs.unlinkSync(sock.path);
    } catch {
      // already gone
    }
  });
  await app.ready();
  const previous = process.umask(0o177);
  try {
    await app.listen({ path: sock.path });
  } catch (e) {
    throw refuse(`cannot listen on ${sock.path}: ${(e as Error).message}`);
  } finally {
    process.umask(previous);
  }
  ino = fs.lstatSync(sock.path).ino;
  try {
    if (sock.gid !== null) fs.lchownSync(sock.path, -1, sock.gid);
    fs.chmodSync(sock.path, ADMIN_SOCKET_MODE);
  } catch (e) {
    await app.close();
    throw refuse(
      `cannot give ${sock.path} group ${sock.group} and mode 0660 (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): ` +
        "the daemon's user must be a member of that group",
    );
  }
  log.info(
    { path: sock.path, group: sock.group ?? "(the daemon user's group)", mode: '0660' },
    'admin socket listening',
  );
}
