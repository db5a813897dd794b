import { EntitySchema } from 'typeorm';
import { instant, jsonText } from '../columns';

import type { ClientRecord } from '../../policy/clients';

/** An API client row: the domain record as stored. */
export type ClientRow = ClientRecord;

export const ClientEntity = new EntitySchema<ClientRow>({
  name: 'Client',
  tableName: 'clients',
  columns: {
    id: { type: 'varchar', length: 36, primary: true },
    name: { type: 'varchar', length: 64, unique: true },
    secretHash: { type: 'text', name: 'secret_hash', nullable: true },
    certSpkiSha256: { type: 'varchar', length: 64, name: 'cert_spki_sha256', nullable: true, unique: true },
    grants: { type: 'text', transformer: jsonText },
    createdAt: { type: 'bigint', name: 'created_at', transformer: instant },
    updatedAt: { type: 'bigint', name: 'updated_at', transformer: instant },
    seal: { type: 'text', nullable: true },
  },
});
