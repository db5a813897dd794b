import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { Client } from 'pg';
import { MIGRATIONS } from '../../migrations';
import { redactUrl } from './data-source';

/** What `config check --deep` learns about the store, touching nothing. */
export interface StoreInspection {
  /** The store URL, its password redacted. */
  store: string;
  /** Why the store cannot be used (unreachable, unreadable, a schema newer than this release), or null. */
  problem: string | null;
  /** False when it was never initialised: no SQLite file yet, or no keywarden schema in the database. */
  initialised: boolean;
  /** Migrations this release has that the store has not run yet (init and serve run them). */
  pendingMigrations: string[];
}

const KNOWN = MIGRATIONS.map((m) => (new m() as { name?: string }).name ?? m.name);

/**
 * Inspects the store named by `url` without writing anything: no file, directory, table or
 * migration is created (SQLite is opened read-only; PostgreSQL is only queried). Never throws.
 */
export async function inspectStore(url: string): Promise<StoreInspection> {
  const store = redactUrl(url);
  const base = { store, problem: null, initialised: true, pendingMigrations: [] as string[] };
  try {
    const ran = url.startsWith('sqlite:')
      ? sqliteMigrations(url.slice('sqlite:'.length))
      : await pgMigrations(url);
    if (ran === 'absent') return { ...base, initialised: false };
    if (typeof ran === 'string') return { ...base, problem: ran, initialised: false };
    const unknown = ran.filter((n) => !KNOWN.includes(n));
    return {
      ...base,
      problem:
        unknown.length > 0
          ? `the store has migrations this release does not know (${unknown.join(', ')}): it was made by a newer keywarden`
          : null,
      pendingMigrations: KNOWN.filter((n) => !ran.includes(n)),
    };
  } catch (e) {
    return { ...base, problem: (e as Error).message, initialised: false };
  }
}

/** The migrations a SQLite store ran; 'absent' when it does not exist yet (and could be made); else a problem. */
function sqliteMigrations(file: string): string[] | 'absent' | string {
  if (file === ':memory:') return 'absent';
  if (!fs.existsSync(file)) {
    // Not made yet: init or serve will make it, if the nearest existing directory lets them.
    let dir = path.dirname(path.resolve(file));
    while (!fs.existsSync(dir)) dir = path.dirname(dir);
    try {
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
      return 'absent';
    } catch (e) {
      return `${file} does not exist and cannot be created: ${dir} is not writable (${(e as NodeJS.ErrnoException).code})`;
    }
  }
  // A process has the store open (its -wal and -shm exist): read it in place, read-only. Otherwise
  // read a private copy: SQLite opening a WAL-mode file, even read-only, would leave -wal and -shm
  // files beside the store.
  const live = fs.existsSync(`${file}-wal`) && fs.existsSync(`${file}-shm`);
  const tmp = live ? null : fs.mkdtempSync(path.join(os.tmpdir(), 'keywarden-inspect-'));
  try {
    let target = file;
    if (tmp) {
      target = path.join(tmp, 'store.db');
      fs.copyFileSync(file, target);
    }
    const db = new Database(target, { readonly: !tmp, fileMustExist: true });
    try {
      const table = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'migrations'")
        .get();
      if (!table) return 'absent';
      return (db.prepare('SELECT name FROM migrations').all() as { name: string }[]).map((r) => r.name);
    } finally {
      db.close();
    }
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function pgMigrations(url: string): Promise<string[] | 'absent'> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ t: string | null }>("SELECT to_regclass('migrations')::text AS t");
    if (!rows[0]?.t) return 'absent';
    return (await client.query<{ name: string }>('SELECT name FROM migrations')).rows.map((r) => r.name);
  } finally {
    await client.end();
  }
}
