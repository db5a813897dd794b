import { EntitySchema } from 'typeorm';
import { instant, jsonText } from '../columns';

/**
 * One record of the hash-chained audit log (I7). Append-only: the table refuses UPDATE, and
 * DELETE of anything but a prefix that `audit prune` announced (see the audit-log migration).
 * `hash` = SHA-256 over the canonical JSON of every other column plus `prevHash`.
 */
export interface AuditRecordRow {
  seq: number;
  at: Date;
  type: string;
  actor: string;
  scope: string | null;
  kid: string | null;
  /** Free-form JSON, scrubbed of secrets before it is hashed and stored. */
  data: Record<string, unknown>;
  /** `hash` of the record at `seq - 1` (or of the pruned record a signed anchor names). */
  prevHash: string;
  hash: string;
}

/** Integer columns come back from PostgreSQL as strings. */
const integer = {
  to: (v: number | null) => v,
  from: (v: string | number | null) => (v == null ? null : Number(v)),
};

export const AuditRecordEntity = new EntitySchema<AuditRecordRow>({
  name: 'AuditRecord',
  tableName: 'audit_records',
  columns: {
    seq: { type: 'bigint', primary: true, transformer: integer },
    at: { type: 'bigint', transformer: instant },
    type: { type: 'varchar', length: 64 },
    actor: { type: 'varchar', length: 200 },
    scope: { type: 'varchar', length: 64, nullable: true },
    kid: { type: 'varchar', length: 64, nullable: true },
    data: { type: 'text', transformer: jsonText },
    prevHash: { type: 'varchar', length: 64, name: 'prev_hash' },
    hash: { type: 'varchar', length: 64 },
  },
  indices: [
    { name: 'idx_audit_kid', columns: ['kid'] },
    { name: 'idx_audit_scope', columns: ['scope'] },
    { name: 'idx_audit_type', columns: ['type'] },
  ],
});

/**
 * The single head row (id = 1): the chain's last seq and hash, updated in the same transaction
 * as every append (a deleted tail no longer matches it), plus the latest signed head marker.
 */
export interface AuditHeadRow {
  id: number;
  seq: number;
  hash: string;
  /** Compact JWS by the audit key over the latest checkpoint record's seq and hash. */
  marker: string | null;
  markerSeq: number | null;
  /** Records below this seq may be deleted (set by `audit prune` inside its transaction). */
  pruneBelow: number;
  updatedAt: Date;
}

export const AuditHeadEntity = new EntitySchema<AuditHeadRow>({
  name: 'AuditHead',
  tableName: 'audit_head',
  columns: {
    id: { type: 'integer', primary: true },
    seq: { type: 'bigint', transformer: integer },
    hash: { type: 'varchar', length: 64 },
    marker: { type: 'text', nullable: true },
    markerSeq: { type: 'bigint', name: 'marker_seq', nullable: true, transformer: integer },
    pruneBelow: { type: 'bigint', name: 'prune_below', transformer: integer },
    updatedAt: { type: 'bigint', name: 'updated_at', transformer: instant },
  },
});
