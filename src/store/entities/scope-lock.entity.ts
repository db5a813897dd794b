import { EntitySchema } from 'typeorm';

/** Lease rows that serialise reconcile per scope on SQLite (PostgreSQL uses advisory locks). */
export interface ScopeLockRow {
  scope: string;
  holder: string;
  expiresAtMs: number;
}

export const ScopeLockEntity = new EntitySchema<ScopeLockRow>({
  name: 'ScopeLock',
  tableName: 'scope_locks',
  columns: {
    scope: { type: 'varchar', length: 64, primary: true },
    holder: { type: 'varchar', length: 200 },
    expiresAtMs: {
      type: 'bigint',
      name: 'expires_at_ms',
      transformer: { to: (v) => v, from: (v) => Number(v) },
    },
  },
});
