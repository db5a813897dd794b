import type { EntityManager } from 'typeorm';

/**
 * At most this many changes are read one by one; a daemon further behind reloads everything
 * (reading the changed rows by id would then cost about as much as reading them all).
 */
export const MAX_CHANGES_READ = 1000;

/** A key set version as readKeySetVersion gives it: `<counter>:<nonce>`. */
function parseVersion(version: string): { counter: number; nonce: string } | null {
  const i = version.indexOf(':');
  const counter = Number(version.slice(0, i));
  return i > 0 && Number.isSafeInteger(counter) ? { counter, nonce: version.slice(i + 1) } : null;
}

/**
 * The ids of the key rows changed between the version a process holds and the current one, from
 * `key_changes` (migration KeyChangeLog1764500000000), or null when the log cannot vouch for it
 * and the caller must read every row: the held version's own entry is not there with the held
 * nonce (a restored backup, pruned, a version from before the log), an entry is missing, the
 * last entry is not the current version and nonce, an entry names no row (TRUNCATE), or there
 * are more than MAX_CHANGES_READ. Read with `m` in the transaction that read `current`.
 */
export async function changedKeyIds(
  m: EntityManager,
  held: string,
  current: string,
): Promise<string[] | null> {
  const from = parseVersion(held);
  const to = parseVersion(current);
  if (!from || !to || to.counter <= from.counter || to.counter - from.counter > MAX_CHANGES_READ) return null;
  const p = (n: number) => (m.connection.options.type === 'postgres' ? `$${n}` : '?');
  const rows = (await m.query(
    `SELECT version, nonce, key_id, old_key_id FROM key_changes
      WHERE version >= ${p(1)} AND version <= ${p(2)} ORDER BY version`,
    [from.counter, to.counter],
  )) as { version: string | number; nonce: string; key_id: string | null; old_key_id: string | null }[];
  // version is the primary key: with the right count and both ends, none is missing.
  if (rows.length !== to.counter - from.counter + 1) return null;
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  if (Number(first.version) !== from.counter || first.nonce !== from.nonce) return null;
  if (Number(last.version) !== to.counter || last.nonce !== to.nonce) return null;
  const ids = new Set<string>();
  // The first entry is the change the held version already includes.
  for (const row of rows.slice(1)) {
    if (row.key_id === null) return null;
    ids.add(row.key_id);
    if (row.old_key_id !== null) ids.add(row.old_key_id);
  }
  return [...ids];
}
