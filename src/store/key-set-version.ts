import type { DataSource, EntityManager } from 'typeorm';
import { KeywardenError } from '../policy/errors';
import { KeyEntity } from './entities/key.entity';

/**
 * The store's key set version (migration KeySetVersion1764200000000): a value the database
 * changes in every transaction that writes `keys`, never the same for two different key sets.
 * Only compared for equality.
 */
export async function readKeySetVersion(q: DataSource | EntityManager): Promise<string> {
  const rows = (await q.query('SELECT version, nonce FROM key_set_version WHERE id = 1')) as {
    version: string | number;
    nonce: string;
  }[];
  if (rows.length !== 1)
    throw new KeywardenError('STORE_ERROR', 'key_set_version has no row: the store is not migrated');
  // bigint comes back as a string from pg and a number from SQLite.
  return `${String(rows[0]!.version)}:${rows[0]!.nonce}`;
}

/** The columns of `keys` whose update must change the version: all but `last_state`. */
export function versionedKeyColumns(): string[] {
  return Object.entries(KeyEntity.options.columns)
    .map(([property, column]) => column?.name ?? property)
    .filter((name) => name !== 'last_state');
}

/**
 * What the installed triggers on `keys` react to: whether inserts and deletes change the version,
 * and the columns whose update does (empty when no update trigger is installed).
 */
export async function installedKeyTriggers(
  ds: DataSource,
): Promise<{ insert: boolean; delete: boolean; updateColumns: string[] }> {
  if (ds.options.type === 'postgres') {
    const rows = (await ds.query(
      `SELECT t.tgtype AS type,
              ARRAY(SELECT a.attname::text FROM pg_attribute a
                    WHERE a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr)) AS columns
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relname = 'keys' AND t.tgname = 'keys_changed' AND t.tgenabled <> 'D'`,
    )) as { type: number; columns: string[] }[];
    const t = rows[0];
    if (!t) return { insert: false, delete: false, updateColumns: [] };
    // pg_trigger.tgtype bits: 4 INSERT, 8 DELETE, 16 UPDATE (TRIGGER_TYPE_* in PostgreSQL).
    return {
      insert: (t.type & 4) !== 0,
      delete: (t.type & 8) !== 0,
      updateColumns: (t.type & 16) !== 0 ? t.columns : [],
    };
  }
  const rows = (await ds.query(
    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'keys' AND name LIKE 'keys_changed_%'",
  )) as { name: string; sql: string }[];
  const sql = (name: string) => rows.find((r) => r.name === name)?.sql ?? '';
  const update = /AFTER\s+UPDATE\s+OF\s+([\s\S]+?)\s+ON\s+keys/i.exec(sql('keys_changed_update'));
  return {
    insert: /AFTER\s+INSERT\s+ON\s+keys/i.test(sql('keys_changed_insert')),
    delete: /AFTER\s+DELETE\s+ON\s+keys/i.test(sql('keys_changed_delete')),
    updateColumns: update ? update[1]!.split(',').map((c) => c.trim()) : [],
  };
}

/**
 * Refuses a store whose `keys` triggers would not change the version on every write that
 * matters: daemons polling it would then never see a revocation (on SQLite, polling is the only
 * way key changes travel). Dropped triggers (by hand, or by a table rebuild in some later
 * migration) are caught here, when a process opens the store, not by a key that keeps signing.
 */
export async function assertKeySetVersionTriggers(ds: DataSource): Promise<void> {
  const installed = await installedKeyTriggers(ds);
  const missing = versionedKeyColumns().filter((c) => !installed.updateColumns.includes(c));
  const problems = [
    ...(installed.insert ? [] : ['inserts']),
    ...(installed.delete ? [] : ['deletes']),
    ...(missing.length > 0 ? [`updates of ${missing.join(', ')}`] : []),
  ];
  if (problems.length > 0) {
    throw new KeywardenError(
      'STORE_ERROR',
      `the triggers on keys do not record ${problems.join('; ')} in key_set_version, so running daemons ` +
        'would not see those key changes (revocations included); restore them from migration ' +
        'KeySetVersion1764200000000 or a later one',
    );
  }
}
