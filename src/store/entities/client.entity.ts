import { EntitySchema } from 'typeorm';
import { instant, jsonText } from '../columns';

export type Grant = 'sign' | 'verify';

/** An API client. Only a hash of its secret is stored. */
export interface ClientRow {
  id: string;
  name: string;
  /** `scrypt$N$r$p$salt$hash` (base64url parts). */
  secretHash: string;
  /** Grants per scope, e.g. `{ "consumer": ["sign"] }`. */
  grants: Record<string, Grant[]>;
  createdAt: Date;
  updatedAt: Date;
  /**
   * The audit key's seal over the row's facts (policy/client-seal.ts), as the text
   * `{"kid","sig"}`; null on rows made before client sealing. Plain text, parsed by the
   * lifecycle: a malformed value written into the store refuses its row, never the whole read.
   */
  seal: string | null;
}

export const ClientEntity = new EntitySchema<ClientRow>({
  name: 'Client',
  tableName: 'clients',
  columns: {
    id: { type: 'varchar', length: 36, primary: true },
    name: { type: 'varchar', length: 64, unique: true },
    secretHash: { type: 'text', name: 'secret_hash' },
    grants: { type: 'text', transformer: jsonText },
    createdAt: { type: 'bigint', name: 'created_at', transformer: instant },
    updatedAt: { type: 'bigint', name: 'updated_at', transformer: instant },
    seal: { type: 'text', nullable: true },
  },
});
