import { EntitySchema } from 'typeorm';
import type { KeyRecord } from '../../policy/key';
import { instant, jsonText } from '../columns';

/**
 * A key row (DESIGN.md §2): the domain record plus bookkeeping columns. Timestamps are fixed
 * at creation and only ever move earlier.
 */
export interface KeyRow extends KeyRecord {
  /** The backend name, denormalised from backendRef for queries. */
  backend: string;
  /** Set on every write by the writer's clock (for people; daemons poll key_set_version). */
  updatedAt: Date;
  /** Last effective state reconcile recorded in the audit log (informational; never trusted). */
  lastState: string | null;
}

const at = (name: string, nullable = false) =>
  ({ type: 'bigint', name, nullable, transformer: instant }) as const;

export const KeyEntity = new EntitySchema<KeyRow>({
  name: 'Key',
  tableName: 'keys',
  columns: {
    id: { type: 'varchar', length: 36, primary: true },
    kid: { type: 'varchar', length: 64, nullable: true, unique: true },
    scope: { type: 'varchar', length: 64 },
    alg: { type: 'varchar', length: 8 },
    status: { type: 'varchar', length: 16 },
    backend: { type: 'varchar', length: 64 },
    backendRef: { type: 'text', name: 'backend_ref', transformer: jsonText },
    publicJwk: { type: 'text', name: 'public_jwk', nullable: true, transformer: jsonText },
    publishAt: at('publish_at'),
    activateAt: at('activate_at'),
    retireAt: at('retire_at'),
    expiresAt: at('expires_at'),
    revokedAt: at('revoked_at', true),
    revokedReason: { type: 'text', name: 'revoked_reason', nullable: true },
    destroyedAt: at('destroyed_at', true),
    createdAt: at('created_at'),
    createdBy: { type: 'varchar', length: 128, name: 'created_by' },
    updatedAt: at('updated_at'),
    lastState: { type: 'varchar', length: 16, name: 'last_state', nullable: true },
  },
  indices: [{ name: 'idx_keys_scope', columns: ['scope'] }],
});
