import { TableColumn, TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';

/**
 * Mutual TLS for API clients: `clients.cert_spki_sha256` binds a client to a certificate (the
 * SHA-256 of its public key, unique: one certificate names one client), and `secret_hash` becomes
 * nullable, since a client made with `clients add --cert` has no bearer secret. Both are facts the
 * seal covers (src/policy/client-seal.ts). On SQLite, TypeORM's changeColumn rebuilds the table
 * (copying every row as it is); on PostgreSQL it drops the NOT NULL.
 */
export class ClientCertificate1764400000000 implements MigrationInterface {
  name = 'ClientCertificate1764400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn(
      'clients',
      new TableColumn({ name: 'cert_spki_sha256', type: 'varchar', length: '64', isNullable: true }),
    );
    await q.createIndex(
      'clients',
      new TableIndex({
        name: 'idx_clients_cert_spki_sha256',
        columnNames: ['cert_spki_sha256'],
        isUnique: true,
      }),
    );
    await q.changeColumn(
      'clients',
      'secret_hash',
      new TableColumn({ name: 'secret_hash', type: 'text', isNullable: true }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    // Clients without a secret cannot exist in the older schema.
    await q.query('DELETE FROM clients WHERE secret_hash IS NULL');
    await q.changeColumn('clients', 'secret_hash', new TableColumn({ name: 'secret_hash', type: 'text' }));
    await q.dropIndex('clients', 'idx_clients_cert_spki_sha256');
    await q.dropColumn('clients', 'cert_spki_sha256');
  }
}
