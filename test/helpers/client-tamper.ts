/**
 * What an attacker who can write the store (SQLite file or PostgreSQL database) but cannot use
 * the HSM does to API client rows: plain SQL on `clients`, as any database client would,
 * bypassing keywarden's repositories. Works on both SQLite and PostgreSQL.
 */
import { createSign, generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { hashSecret } from '../../src/lifecycle/secret-hash';
import { clientSealInput, encodeClientSeal } from '../../src/policy/client-seal';

/** Columns of `clients` as stored (instants as epoch ms, grants as JSON text). */
export type RawClientColumns = Partial<{
  id: string;
  name: string;
  secret_hash: string | null;
  cert_spki_sha256: string | null;
  grants: string;
  created_at: number;
  updated_at: number;
  seal: string | null;
}>;

export interface ClientWriter {
  insert(row: RawClientColumns): Promise<void>;
  update(id: string, set: RawClientColumns): Promise<void>;
  read(id: string): Promise<Record<string, unknown> | undefined>;
}

export function clientWriter(ds: DataSource): ClientWriter {
  const p = (i: number) => (ds.options.type === 'postgres' ? `$${i}` : '?');
  return {
    async insert(row) {
      const cols = Object.keys(row);
      await ds.query(
        `INSERT INTO clients (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})`,
        Object.values(row),
      );
    },
    async update(id, set) {
      const cols = Object.keys(set);
      await ds.query(
        `UPDATE clients SET ${cols.map((c, i) => `${c} = ${p(i + 1)}`).join(', ')} WHERE id = ${p(cols.length + 1)}`,
        [...Object.values(set), id],
      );
    },
    async read(id) {
      const rows = (await ds.query(`SELECT * FROM clients WHERE id = ${p(1)}`, [id])) as Record<
        string,
        unknown
      >[];
      return rows[0];
    },
  };
}

/** A secret of the shape keywarden issues, for client id `id`, and its scrypt hash. */
export async function attackerSecret(id: string): Promise<{ secret: string; secretHash: string }> {
  const secret = `kw_${id}_${randomBytes(32).toString('base64url')}`;
  return { secret, secretHash: await hashSecret(secret) };
}

/** A whole client row of the attacker's making (no seal unless `seal` is given), and its secret. */
export async function attackerClientRow(
  grants: Record<string, string[]>,
  opts: { name?: string; seal?: string | null; now?: number } = {},
): Promise<{ row: RawClientColumns; secret: string; id: string }> {
  const id = randomUUID();
  const { secret, secretHash } = await attackerSecret(id);
  const now = opts.now ?? Date.now();
  return {
    id,
    secret,
    row: {
      id,
      name: opts.name ?? `mallory-${id.slice(0, 8)}`,
      secret_hash: secretHash,
      grants: JSON.stringify(grants),
      created_at: now,
      updated_at: now,
      seal: opts.seal ?? null,
    },
  };
}

/** A seal the attacker makes with a key of their own (ES256), claiming audit kid `kid`. */
export function attackerSeal(row: RawClientColumns, kid: string, privateKey?: KeyObject): string {
  const key = privateKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const input = clientSealInput({
    id: row.id!,
    name: row.name!,
    secretHash: row.secret_hash!,
    grants: JSON.parse(row.grants!) as unknown,
    createdAt: new Date(row.created_at!),
  });
  const s = createSign('sha256');
  s.update(input);
  return encodeClientSeal({ kid, signature: s.sign({ key, dsaEncoding: 'ieee-p1363' }) });
}
