import * as fs from 'node:fs';
import * as path from 'node:path';
import 'reflect-metadata';
import { DataSource, type QueryRunner } from 'typeorm';
import { MIGRATIONS } from '../../migrations';
import { KeywardenError } from '../policy/errors';
import { ClientEntity } from './entities/client.entity';
import { KeyEntity } from './entities/key.entity';
import { ScopeLockEntity } from './entities/scope-lock.entity';
import { assertKeySetVersionTriggers } from './key-set-version';

export const ENTITIES = [KeyEntity, ClientEntity, ScopeLockEntity];

/** Extra entities/migrations other modules (e.g. the audit log) register before opening. */
export interface StoreExtensions {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  entities?: Function[] | import('typeorm').EntitySchema[];
  // eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
  migrations?: Function[];
}

/**
 * Creates `dir` (and its parents, owner-only) for a store or data directory. A directory that
 * cannot be made (no permission, a file in the way, a read-only file system) is STORE_ERROR with
 * the path and the reason, not an internal error: it is the usual mistake of a CLI run as
 * another user or with another config than the daemon's.
 */
export function ensureStoreDirectory(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new KeywardenError(
      'STORE_ERROR',
      `cannot create the directory ${dir}: ${err.code ?? err.message}` +
        (err.code === 'EACCES' || err.code === 'EPERM'
          ? ` (running as uid ${process.getuid?.() ?? '?'}; is this the daemon's user and config?)`
          : ''),
      { cause: e },
    );
  }
}

/**
 * Builds the DataSource for a store URL: `sqlite:<file>` (better-sqlite3, the embedded
 * default, WAL mode with a busy timeout so the CLI and daemons on one host share it) or
 * `postgres://...` (several daemons sharing one database).
 */
export function createDataSource(url: string, ext: StoreExtensions = {}): DataSource {
  const entities = [...ENTITIES, ...(ext.entities ?? [])];
  const migrations = [...MIGRATIONS, ...(ext.migrations ?? [])];
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    if (file !== ':memory:') ensureStoreDirectory(path.dirname(file));
    return translateStoreErrors(
      new DataSource({
        type: 'better-sqlite3',
        database: file,
        enableWAL: file !== ':memory:',
        timeout: 10_000,
        entities,
        migrations,
        synchronize: false,
        logging: false,
      }),
    );
  }
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    return translateStoreErrors(
      new DataSource({
        type: 'postgres',
        url,
        entities,
        migrations,
        synchronize: false,
        logging: false,
        extra: { max: 10, connectionTimeoutMillis: 5000 },
      }),
    );
  }
  throw new KeywardenError(
    'CONFIG_INVALID',
    `store.url must start with sqlite: or postgres:// (got ${redactUrl(url)})`,
  );
}

/**
 * Opens the store and applies pending migrations (each in its own transaction). With
 * `mustExist`, a store that was never initialised (a missing SQLite file, a database without
 * keywarden's migrations table) is STORE_NOT_INITIALIZED, and nothing is created: no file, no
 * directory, no table. Only `init` and `serve` make a store.
 */
export async function openStore(
  url: string,
  ext: StoreExtensions = {},
  opts: { mustExist?: boolean } = {},
): Promise<DataSource> {
  if (opts.mustExist && url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length);
    if (file !== ':memory:' && !fs.existsSync(file)) throw notInitialized(url, `${file} does not exist`);
  }
  const ds = createDataSource(url, ext);
  try {
    await ds.initialize();
    if (opts.mustExist && !(await hasMigrationsTable(ds))) {
      throw notInitialized(url, 'it holds no keywarden schema');
    }
    await ds.runMigrations({ transaction: 'each' });
    await assertKeySetVersionTriggers(ds);
    if (ds.options.type === 'better-sqlite3') serializeTransactions(ds);
  } catch (e) {
    if (ds.isInitialized) await ds.destroy().catch(() => undefined);
    if (e instanceof KeywardenError && e.code === 'STORE_NOT_INITIALIZED') throw e;
    throw new KeywardenError('STORE_ERROR', `cannot open store ${redactUrl(url)}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return ds;
}

function notInitialized(url: string, why: string): KeywardenError {
  return new KeywardenError(
    'STORE_NOT_INITIALIZED',
    `store ${redactUrl(url)} is not initialised (${why}); run \`keywarden init\` with this config first ` +
      `(or check store.url and --config: is this the daemon's config?)`,
  );
}

async function hasMigrationsTable(ds: DataSource): Promise<boolean> {
  const runner = ds.createQueryRunner();
  try {
    return await runner.hasTable('migrations');
  } finally {
    await runner.release();
  }
}

const TRANSLATING = Symbol('keywarden.translateStoreErrors');

/**
 * Every query of `ds` (repositories, transactions, locks, the audit log, migrations) goes through
 * a query runner; a failure there (a read-only file or file system, a full disk, a lost
 * connection) becomes STORE_ERROR, never an internal error. Errors are API (docs/errors.md): the
 * CLI exits 7 and HTTP answers 503 for them. Wrapped at the one place all queries pass, so no
 * repository or use case can forget it.
 */
function translateStoreErrors(ds: DataSource): DataSource {
  const driver = ds.driver;
  const create = driver.createQueryRunner.bind(driver);
  driver.createQueryRunner = (mode) => {
    const runner = create(mode) as QueryRunner & { [TRANSLATING]?: true };
    if (!runner[TRANSLATING]) {
      const query = runner.query.bind(runner) as (...args: unknown[]) => Promise<unknown>;
      (runner as { query: unknown }).query = async (...args: unknown[]) => {
        try {
          return await query(...args);
        } catch (e) {
          throw storeFailure(e);
        }
      };
      runner[TRANSLATING] = true;
    }
    return runner;
  };
  return ds;
}

function storeFailure(e: unknown): KeywardenError {
  if (e instanceof KeywardenError) return e;
  const message = (e as Error)?.message ?? String(e);
  const code = String((e as { driverError?: { code?: unknown } }).driverError?.code ?? '');
  const hint = /READONLY|readonly/.test(code + message)
    ? ` (the store is read-only: a read-only file system, or a file not writable by uid ${process.getuid?.() ?? '?'})`
    : /SQLITE_FULL|disk is full|53100/.test(code + message)
      ? ' (the disk holding the store is full)'
      : '';
  return new KeywardenError('STORE_ERROR', `store query failed: ${message}${hint}`, { cause: e });
}

/** Store URLs may carry passwords: never print them. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]+):[^@]*@/, '$1:***@');
}

/**
 * better-sqlite3 gives a process ONE connection, and TypeORM turns a transaction started while
 * another is open into a savepoint of it: two concurrent `ds.transaction` calls (two scopes
 * reconciling at once) would then commit or roll back each other's work. Queue them instead,
 * so each transaction runs alone on the connection. (Callbacks must not start a nested
 * `ds.transaction`; they pass their EntityManager down, as the repositories expect.)
 */
function serializeTransactions(ds: DataSource): void {
  const original = ds.transaction.bind(ds) as (...args: unknown[]) => Promise<unknown>;
  let tail: Promise<unknown> = Promise.resolve();
  (ds as { transaction: unknown }).transaction = (...args: unknown[]) => {
    const run = tail.then(() => original(...args));
    tail = run.catch(() => undefined);
    return run;
  };
}
