/**
 * What an attacker who can write the store (the SQLite file, or the PostgreSQL database) but
 * cannot use the HSM does to key rows: plain SQL on the `keys` table, as any database client
 * would, bypassing keywarden's repositories (the database's own triggers still fire, as they
 * would for the attacker). Works on both SQLite and PostgreSQL.
 */
import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { thumbprint } from '../../src/policy/thumbprint';
import type { KeyRecord, PublicJwk } from '../../src/policy/key';

/** Columns of `keys` an attacker writes, with the values as stored (instants as epoch ms). */
export type RawKeyColumns = Partial<{
  id: string;
  kid: string | null;
  scope: string;
  alg: string;
  status: string;
  backend: string;
  backend_ref: string;
  public_jwk: string | null;
  publish_at: number;
  activate_at: number;
  retire_at: number;
  expires_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
  destroyed_at: number | null;
  created_at: number;
  created_by: string;
  updated_at: number;
  /** The state reconcile last recorded (not part of the key set version). */
  last_state: string | null;
}>;

export interface StoreWriter {
  update(id: string, set: RawKeyColumns): Promise<void>;
  insert(row: RawKeyColumns): Promise<void>;
  remove(id: string): Promise<void>;
  /** The row as stored, or undefined. */
  read(id: string): Promise<Record<string, unknown> | undefined>;
}

export function storeWriter(ds: DataSource): StoreWriter {
  const pg = ds.options.type === 'postgres';
  const p = (i: number) => (pg ? `$${i}` : '?');
  return {
    async update(id, set) {
      const cols = Object.keys(set);
      const sql = `UPDATE keys SET ${cols.map((c, i) => `${c} = ${p(i + 1)}`).join(', ')} WHERE id = ${p(cols.length + 1)}`;
      await ds.query(sql, [...Object.values(set), id]);
    },
    async insert(row) {
      const cols = Object.keys(row);
      await ds.query(
        `INSERT INTO keys (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`,
        Object.values(row),
      );
    },
    async remove(id) {
      await ds.query(`DELETE FROM keys WHERE id = ${p(1)}`, [id]);
    },
    async read(id) {
      const rows = (await ds.query(`SELECT * FROM keys WHERE id = ${p(1)}`, [id])) as Record<
        string,
        unknown
      >[];
      return rows[0];
    },
  };
}

/** A key row's columns exactly as keywarden writes them. */
export function rawColumns(k: KeyRecord): RawKeyColumns {
  const ms = (d: Date | null) => (d === null ? null : d.getTime());
  return {
    id: k.id,
    kid: k.kid,
    scope: k.scope,
    alg: k.alg,
    status: k.status,
    backend: k.backendRef.backend,
    backend_ref: JSON.stringify(k.backendRef),
    public_jwk: k.publicJwk === null ? null : JSON.stringify(k.publicJwk),
    publish_at: k.publishAt.getTime(),
    activate_at: k.activateAt.getTime(),
    retire_at: k.retireAt.getTime(),
    expires_at: k.expiresAt.getTime(),
    revoked_at: ms(k.revokedAt),
    revoked_reason: k.revokedReason,
    destroyed_at: ms(k.destroyedAt),
    created_at: k.createdAt.getTime(),
    created_by: k.createdBy,
    updated_at: Date.now(),
  };
}

/** The attacker's own key pair, and the row that would publish its public half in `scope`. */
export async function attackerKeyRow(
  template: KeyRecord,
  scope: string,
): Promise<{ row: RawKeyColumns; kid: string; privateKey: KeyObject }> {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const publicJwk = { kty, crv, x, y } as PublicJwk;
  const kid = await thumbprint(publicJwk);
  const id = randomUUID();
  const backendRef = {
    backend: template.backendRef.backend,
    ref: {
      ...template.backendRef.ref,
      id: randomBytes(16).toString('hex'),
      label: `keywarden:${scope}:${id}`,
    },
  };
  const row = rawColumns({
    ...template,
    id,
    kid,
    scope,
    alg: 'ES256',
    status: 'ready',
    publicJwk,
    backendRef,
    revokedAt: null,
    revokedReason: null,
    destroyedAt: null,
  });
  return { row, kid, privateKey };
}
