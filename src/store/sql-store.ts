import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { DataSource, EntityManager } from 'typeorm';
import type { AuditEvent } from '../policy/audit-events';
import type { ClientRecord } from '../policy/clients';
import type { KeyRecord } from '../policy/key';
import { ClientRepository } from './client-repository';
import { KeyRepository } from './key-repository';

/** Free space below which a SQLite store's file system counts as full (4 MiB: many key rows and audit records). */
const MIN_FREE_BYTES = 4 * 1024 * 1024;

/** Appends one audit record inside the transaction `m` (the audit log's own persistence). */
export type AuditAppender = (m: EntityManager, event: AuditEvent) => Promise<void>;

/** Key row access on one EntityManager (a transaction's), or on its own transactions. */
function keysOn(repo: KeyRepository, m?: EntityManager) {
  return {
    listByScope: (scope: string) => repo.listByScope(scope, m),
    listAll: () => repo.listAll(m),
    findById: (id: string) => repo.findById(id, m),
    findByKid: (kid: string) => repo.findByKid(kid, m),
    findByKidOrPrefix: (kidOrPrefix: string) => repo.findByKidOrPrefix(kidOrPrefix, m),
    lastStates: (scope: string) => repo.lastStates(scope, m),
    allLastStates: () => repo.allLastStates(m),
    readIfChanged: (known: string | null) => repo.readIfChanged(known),
    readChangesSince: (known: string | null) => repo.readChangesSince(known),
    insertGenerating: (key: KeyRecord, now: Date) => repo.insertGenerating(key, now, m),
    completeGenerating: (
      id: string,
      fields: Pick<KeyRecord, 'kid' | 'publicJwk' | 'backendRef'>,
      now: Date,
    ) => repo.completeGenerating(id, fields, now, m),
    deleteGenerating: (id: string) => repo.deleteGenerating(id, m),
    revoke: (id: string, at: Date, reason: string) => repo.revoke(id, at, reason, m),
    markDestroyed: (id: string, at: Date) => repo.markDestroyed(id, at, m),
    setLastState: (id: string, state: string) => repo.setLastState(id, state, m),
  };
}

/** Client row access on one EntityManager, or on its own transactions. */
function clientsOn(repo: ClientRepository, m?: EntityManager) {
  return {
    insert: (client: ClientRecord) => repo.insert(client, m),
    findById: (id: string) => repo.findById(id, m),
    findByName: (name: string) => repo.findByName(name, m),
    findByCertificate: (certSpkiSha256: string) => repo.findByCertificate(certSpkiSha256, m),
    delete: (id: string) => repo.delete(id, m),
    updateSecret: (
      id: string,
      expectedSecretHash: string,
      change: { secretHash: string; seal: string },
      now: Date,
    ) => repo.updateSecret(id, expectedSecretHash, change, now, m),
    replaceSeal: (id: string, expected: string | null, seal: string) =>
      repo.replaceSeal(id, expected, seal, m),
    scan: () => repo.scan(m),
    versions: () => repo.versions(),
  };
}

/**
 * The store on SQLite or PostgreSQL, in the shape use cases take (src/lifecycle/ports.ts): key
 * and client rows, and transactions in which their writes and audit records commit together.
 */
export class SqlStore {
  readonly keys: ReturnType<typeof keysOn>;
  readonly clients: ReturnType<typeof clientsOn>;
  private readonly keyRepo: KeyRepository;
  private readonly clientRepo: ClientRepository;

  constructor(
    private readonly ds: DataSource,
    private readonly appendAudit: AuditAppender,
  ) {
    this.keyRepo = new KeyRepository(ds);
    this.clientRepo = new ClientRepository(ds);
    this.keys = keysOn(this.keyRepo);
    this.clients = clientsOn(this.clientRepo);
  }

  transaction<T>(
    fn: (tx: {
      keys: ReturnType<typeof keysOn>;
      clients: ReturnType<typeof clientsOn>;
      audit: { record(event: AuditEvent): Promise<void> };
    }) => Promise<T>,
  ): Promise<T> {
    const run = () =>
      this.ds.transaction((m) =>
        fn({
          keys: keysOn(this.keyRepo, m),
          clients: clientsOn(this.clientRepo, m),
          audit: { record: (event) => this.appendAudit(m, event) },
        }),
      );
    // better-sqlite3 answers every statement synchronously, so a SQLite transaction holds the event
    // loop from BEGIN to COMMIT (its fsync included). Begun on a turn of its own, it does not add
    // to whatever synchronous work its caller just did (a seal object's creation, another commit):
    // with 1,000 keys made at once those added up to blocks of ~80 ms.
    return this.ds.options.type === 'better-sqlite3' ? nextTurn().then(run) : run();
  }

  /**
   * A committed write that leaves nothing behind (a lease row of a scope no one has, inserted and
   * deleted in one transaction), then, for a SQLite file, the room left on its file system: a
   * store that answers reads but cannot commit (disk full, read-only, permissions) is not ready.
   * The free-space floor matters because a small write can still fit into pages SQLite already
   * holds while the next key row or audit record cannot.
   */
  async writable(): Promise<{ ok: boolean; detail: string }> {
    // Within scope_locks.scope's 64 characters; no scope name starts with '_' (slugs).
    const probe = `_write_probe:${randomUUID()}`;
    const pg = this.ds.options.type === 'postgres';
    try {
      await this.ds.transaction(async (m) => {
        await m.query(
          pg
            ? 'INSERT INTO scope_locks (scope, holder, expires_at_ms) VALUES ($1, $2, $3)'
            : 'INSERT INTO scope_locks (scope, holder, expires_at_ms) VALUES (?, ?, ?)',
          [probe, probe, 0],
        );
        await m.query(
          pg ? 'DELETE FROM scope_locks WHERE scope = $1' : 'DELETE FROM scope_locks WHERE scope = ?',
          [probe],
        );
      });
    } catch (e) {
      return { ok: false, detail: `the store cannot be written: ${(e as Error).message}` };
    }
    const file = this.ds.options.type === 'better-sqlite3' ? String(this.ds.options.database) : null;
    if (file !== null && file !== ':memory:') {
      const dir = path.dirname(file);
      try {
        const fsInfo = await fs.promises.statfs(dir);
        const free = fsInfo.bavail * fsInfo.bsize;
        if (free < MIN_FREE_BYTES) {
          return {
            ok: false,
            detail: `the store's file system (${dir}) has ${free} bytes free, below ${MIN_FREE_BYTES}: writes are about to fail`,
          };
        }
      } catch (e) {
        return { ok: false, detail: `cannot read the free space of ${dir}: ${(e as Error).message}` };
      }
    }
    return { ok: true, detail: `${this.ds.options.type} accepts writes` };
  }

  async ping(): Promise<{ ok: boolean; detail: string }> {
    try {
      await this.ds.query('SELECT 1');
      return { ok: true, detail: this.ds.options.type };
    } catch (e) {
      return { ok: false, detail: (e as Error).message };
    }
  }
}
