/**
 * A private PostgreSQL 15 cluster for tests: Debian's server binaries, a temp data directory,
 * a unix socket in it and 127.0.0.1 on a free port, trust authentication for loopback only.
 * Started as the `postgres` user when the tests run as root (initdb refuses root). Always
 * `await pg.stop()` in an after hook; a process-exit hook stops clusters left running.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { freePort } from './free-port';

const run = promisify(execFile);

const BIN_CANDIDATES = [
  '/usr/lib/postgresql/15/bin',
  '/usr/lib/postgresql/16/bin',
  '/usr/lib/postgresql/17/bin',
];

export interface TestPostgres {
  /** Superuser URL of the `postgres` database. */
  url: string;
  /** Creates a fresh, empty database and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  stop(): Promise<void>;
}

const running = new Set<() => void>();
process.on('exit', () => {
  for (const kill of running) kill();
});

function binDir(): string {
  const dir = process.env.KEYWARDEN_PG_BIN ?? BIN_CANDIDATES.find((d) => existsSync(join(d, 'initdb')));
  if (!dir) {
    throw new Error(
      `PostgreSQL server binaries not found (looked in ${BIN_CANDIDATES.join(', ')}): ` +
        'apt-get install postgresql, or set KEYWARDEN_PG_BIN',
    );
  }
  return dir;
}

/** Starts a throwaway cluster (initdb + pg_ctl start, ~1-2 s). */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  const root = await mkdtemp(join(tmpdir(), 'keywarden-pg-'));
  const data = join(root, 'data');
  const asRoot = userInfo().uid === 0;
  // initdb refuses to run as root: run the server tools as `postgres`, owner of the temp dir.
  const as = (cmd: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', cmd, ...args]) : run(cmd, args);
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(root, Number(stdout.trim()), Number(gid.trim()));
  }
  await chmod(root, 0o700);
  const port = await freePort();
  const stop = async () => {
    running.delete(killNow);
    await as(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  };
  const killNow = () => {
    try {
      execFileSync(
        asRoot ? 'runuser' : join(bin, 'pg_ctl'),
        asRoot
          ? ['-u', 'postgres', '--', join(bin, 'pg_ctl'), '-D', data, '-m', 'immediate', 'stop']
          : ['-D', data, '-m', 'immediate', 'stop'],
        { stdio: 'ignore' },
      );
    } catch {
      // already gone
    }
  };
  try {
    await as(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
    await as(join(bin, 'pg_ctl'), [
      '-D',
      data,
      '-l',
      join(root, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
      'start',
    ]);
    running.add(killNow);
  } catch (e) {
    await stop();
    throw e;
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    async createDatabase(prefix = 'kw') {
      const name = `${prefix}_${randomBytes(6).toString('hex')}`;
      const c = new Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop,
  };
}

/** A store an integration suite runs on: `url()` is undefined for the runtime's SQLite file. */
export interface TestStore {
  name: 'SQLite' | 'PostgreSQL';
  url(): Promise<string | undefined>;
}

/**
 * SQLite and PostgreSQL, for suites that run the same tests on both: the PostgreSQL cluster is
 * started on first use and shared by the suite, each `url()` a fresh database named after
 * `prefix`; `stop()` (in the suite's `after`) stops the cluster if it was started.
 */
export function bothStores(prefix: string): { stores: TestStore[]; stop(): Promise<void> } {
  let pg: TestPostgres | undefined;
  return {
    stores: [
      { name: 'SQLite', url: async () => undefined },
      {
        name: 'PostgreSQL',
        url: async () => {
          pg ??= await startPostgres();
          return pg.createDatabase(prefix);
        },
      },
    ],
    async stop() {
      await pg?.stop();
      pg = undefined;
    },
  };
}
