import type { ValueTransformer } from 'typeorm';

/**
 * Instants are stored as integer milliseconds since the epoch (`bigint`) on every driver:
 * exact, sortable, and free of SQLite/PostgreSQL datetime and time-zone differences.
 * PostgreSQL returns bigint as a string, hence Number().
 */
export const instant: ValueTransformer = {
  to: (d: Date | null | undefined) => (d == null ? d : d.getTime()),
  from: (v: string | number | null) => (v == null ? null : new Date(Number(v))),
};

/** JSON documents are stored as text (portable; queried only by key columns). */
export const jsonText: ValueTransformer = {
  to: (v: unknown) => (v === undefined ? undefined : v === null ? null : JSON.stringify(v)),
  from: (v: string | null) => (v == null ? null : JSON.parse(v)),
};
