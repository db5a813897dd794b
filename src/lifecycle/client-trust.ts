import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { KeyBackend } from '../backends/key-backend';
import {
  CLIENT_REFUSAL_REASONS,
  clientSealInput,
  decodeClientSeal,
  type ClientRefusal,
  type ClientRefusalReason,
  type ClientSealFacts,
} from '../policy/client-seal';
import type { Clock } from '../policy/clock';
import type { KeyRecord } from '../policy/key';
import type { KeywardenConfig } from '../policy/scope';
import type { StoredClient } from '../policy/clients';
import { verifyJwsSignature } from './jws-signature';
import { AUDIT_SCOPE } from '../policy/audit-key';
import type { AuditLog, KeyStore } from './ports';
import { judgeFacts, rowDigest, type SealedRow } from './key-integrity';

/** A client row as the trust check reads it: its sealed facts and its seal column. */
export type ClientRowFacts = ClientSealFacts & { seal: string | null };

/** The verdict on one client row. */
export type ClientVerdict =
  { ok: true; kid: string } | { ok: false; reason: ClientRefusalReason; message: string };

/** An audit key confirmed against its backend (its public key as the backend holds it), or why not. */
type AuditKeyAnswer = { key: KeyObject; alg: KeyRecord['alg'] } | Extract<ClientVerdict, { ok: false }>;

/** What the rows judged together share: one read of the audit key rows, one answer per audit key. */
interface JudgePass {
  auditRows(): Promise<readonly KeyRecord[]>;
  auditKeys: Map<string, Promise<AuditKeyAnswer>>;
}

/** What one pass over every client row found. */
export interface ClientTrustReport {
  /** Rows whose seal verifies, with the audit key that made it. */
  trusted: { client: StoredClient; kid: string }[];
  refused: ClientRefusal[];
  checkedAt: Date;
}

export interface ClientTrustDeps {
  config: Pick<KeywardenConfig, 'backends'>;
  clock: Clock;
  log: Logger;
  keys: Pick<KeyStore, 'listByScope'>;
  backend(name: string): Promise<KeyBackend>;
  /** Where findings are recorded: the daemon's scheduling process only; null elsewhere (log only). */
  audit: AuditLog | null;
}

/** Upper bound on remembered verdicts (one per row content); a full pass keeps only current rows. */
const MAX_VERDICTS = 100_000;

/**
 * Whether an API client row is vouched for by an HSM key (docs/api.md#api-clients-and-authentication):
 * the store is not trusted with who may sign. A row is accepted only when its seal verifies over
 * its facts (policy/client-seal.ts) with the public key of the audit key the seal names, where
 * that public key is read from the audit key's backend and the audit key's own row passes its
 * integrity check there (label, public key, and its seal made at its creation: judgeFacts); never
 * with a public key the store holds.
 *
 * One instance per process (built by the composition root). Verdicts are remembered by a digest
 * of the row's facts and seal, and confirmed audit keys by a digest of their row and object, so
 * the HSM is asked once per content, never per request. A failing row is reported once per
 * finding per process: an error log line everywhere, an audit record `client.integrity-failed`
 * where `audit` is set (the daemon's scheduling process).
 */
export class ClientTrust {
  /** Digest of a row's facts and seal -> its verdict (never `backend-unavailable`). */
  private readonly verdicts = new Map<string, ClientVerdict>();
  /** Digest of an audit key row and the object it names -> its public key, read from the backend. */
  private readonly auditKeys = new Map<string, { key: KeyObject; alg: KeyRecord['alg'] }>();
  /** Findings already reported by this process. */
  private readonly reported = new Set<string>();
  private latest: ClientTrustReport | null = null;

  constructor(private readonly deps: ClientTrustDeps) {}

  /** The last full pass's report (null before the first). */
  get report(): ClientTrustReport | null {
    return this.latest;
  }

  /**
   * The verdict on one row. The `_audit` key rows are read from the store, and the audit key asked
   * of its backend, only when the verdict is not remembered; `pass` shares both between the rows
   * of one pass (one read, one answer per audit key, a failing backend asked once). Throws only
   * when the store cannot be read.
   */
  async judge(client: ClientRowFacts, pass: JudgePass = this.newPass()): Promise<ClientVerdict> {
    if (client.seal === null) return refusal('unsealed', UNSEALED);
    const seal = decodeClientSeal(client.seal);
    if (!seal) return refusal('seal-invalid', 'the seal column does not hold a seal');
    const input = sealInputOf(client);
    if (!input) return refusal('seal-invalid', 'the row holds values no seal can cover');
    const digest = digestOf(input, client.seal);
    const known = this.verdicts.get(digest);
    if (known) return known;
    let answer = pass.auditKeys.get(seal.kid);
    if (!answer) {
      answer = pass.auditRows().then((rows) => this.auditKey(seal.kid, rows));
      pass.auditKeys.set(seal.kid, answer);
    }
    const auditKey = await answer;
    if ('reason' in auditKey) {
      if (auditKey.reason !== 'backend-unavailable') this.remember(digest, auditKey);
      return auditKey;
    }
    const verdict: ClientVerdict = (await verifyJwsSignature(
      auditKey.alg,
      auditKey.key,
      input,
      seal.signature,
    ))
      ? { ok: true, kid: seal.kid }
      : refusal(
          'seal-invalid',
          `the seal by audit key ${seal.kid} does not verify over the row: its name, secret hash, ` +
            'certificate binding, grants or creation time were changed, or the seal was copied from another row',
        );
    this.remember(digest, verdict);
    return verdict;
  }

  /**
   * The authentication path's check of the row a presented secret matched: its verdict, with a
   * refusal reported (once per finding per process).
   */
  async admit(client: StoredClient): Promise<ClientVerdict> {
    const verdict = await this.judge(client);
    if (!verdict.ok) await this.reportRefusal(refusalOf(client, verdict));
    return verdict;
  }

  /**
   * Checks every row (one read of the audit key rows for the pass) and reports new findings.
   * Never throws: when the store cannot be read the pass is logged and reports nothing new.
   */
  async check(rows: readonly StoredClient[]): Promise<ClientTrustReport> {
    const report: ClientTrustReport = { trusted: [], refused: [], checkedAt: this.deps.clock.now() };
    const pass = this.newPass();
    try {
      for (const client of rows) {
        const verdict = await this.judge(client, pass);
        if (verdict.ok) report.trusted.push({ client, kid: verdict.kid });
        else report.refused.push(refusalOf(client, verdict));
      }
    } catch (e) {
      this.deps.log.error(
        { err: (e as Error).message },
        'API client trust check failed: cannot read the store',
      );
      return report;
    }
    // Only the rows that exist now keep their verdicts remembered.
    const current = new Set<string>();
    for (const r of rows) {
      const input = r.seal === null ? null : sealInputOf(r);
      if (input) current.add(digestOf(input, r.seal as string));
    }
    for (const d of [...this.verdicts.keys()]) if (!current.has(d)) this.verdicts.delete(d);
    const findings = new Set<string>();
    for (const r of report.refused) {
      findings.add(findingKey(r));
      await this.reportRefusal(r);
    }
    // A finding that went away (sealed, removed, restored) is reported again if it comes back.
    for (const key of [...this.reported]) if (!findings.has(key)) this.reported.delete(key);
    this.latest = report;
    return report;
  }

  private newPass(): JudgePass {
    let rows: Promise<KeyRecord[]> | undefined;
    return {
      auditRows: () => (rows ??= this.deps.keys.listByScope(AUDIT_SCOPE)),
      auditKeys: new Map(),
    };
  }

  /** The audit key named `kid`, confirmed against its backend, or why it cannot be. */
  private async auditKey(kid: string, rows: readonly KeyRecord[]): Promise<AuditKeyAnswer> {
    const row = rows.find((k) => k.kid === kid && k.status === 'ready' && k.publicJwk !== null);
    if (!row)
      return refusal('seal-key-unknown', `the seal names audit key ${kid}, which the store does not have`);
    const name = row.backendRef.backend;
    if (!this.deps.config.backends[name]) {
      return refusal('seal-key-refused', `audit key ${kid}: its backend ${name} is not configured`);
    }
    let backend: KeyBackend;
    let identity: string;
    try {
      backend = await this.deps.backend(name);
    } catch (e) {
      return refusal('backend-unavailable', `backend ${name} could not be opened: ${(e as Error).message}`);
    }
    try {
      identity = backend.refIdentity(row.backendRef);
    } catch (e) {
      return refusal(
        'seal-key-refused',
        `audit key ${kid}: its backend reference is not usable: ${(e as Error).message}`,
      );
    }
    const digest = rowDigest(row as SealedRow, identity);
    const known = this.auditKeys.get(digest);
    if (known) return known;
    let answer;
    try {
      [answer] = await backend.inspectKeys([{ ref: row.backendRef, alg: row.alg }]);
    } catch (e) {
      return refusal('backend-unavailable', `backend ${name}: ${(e as Error).message}`);
    }
    if (answer?.status !== 'found') {
      return refusal(
        'seal-key-refused',
        answer?.status === 'unreadable'
          ? `audit key ${kid}: ${answer.problem}`
          : `backend ${name} holds no audit key ${kid} (destroyed, or the row points elsewhere)`,
      );
    }
    const judged = await judgeFacts(row as SealedRow, answer.facts);
    if (!judged.ok) {
      return refusal(
        'seal-key-refused',
        `audit key ${kid} is not vouched for by its backend (${judged.reason}): ${judged.message}`,
      );
    }
    // The public key the backend holds (judgeFacts found the row's equal to it).
    const confirmed = {
      key: createPublicKey({ key: { ...answer.facts.publicJwk }, format: 'jwk' }),
      alg: row.alg,
    };
    this.auditKeys.set(digest, confirmed);
    return confirmed;
  }

  private remember(digest: string, verdict: ClientVerdict): void {
    if (this.verdicts.size >= MAX_VERDICTS) {
      const oldest = this.verdicts.keys().next();
      if (!oldest.done) this.verdicts.delete(oldest.value);
    }
    this.verdicts.set(digest, verdict);
  }

  private async reportRefusal(r: ClientRefusal): Promise<void> {
    const key = findingKey(r);
    if (this.reported.has(key)) return;
    this.reported.add(key);
    const transient = r.reason === 'backend-unavailable';
    this.deps.log[transient ? 'warn' : 'error'](
      {
        clientId: r.clientId,
        client: r.name,
        reason: r.reason,
        detail: r.message,
        ...(r.reason === 'unsealed'
          ? {
              todo:
                `if this client is yours (made before client sealing), check its grants with ` +
                `\`keywarden clients show ${r.name}\` and vouch for it with \`keywarden clients seal ${r.name}\`; ` +
                `otherwise remove it: \`keywarden clients remove ${r.clientId}\``,
            }
          : {}),
      },
      'API client refused: no HSM key vouches for its row, its secret gets 401 on every route',
    );
    if (transient || !this.deps.audit) return;
    try {
      await this.deps.audit.record({
        type: 'client.integrity-failed',
        actor: 'system:integrity',
        data: { clientId: r.clientId, name: r.name, reason: r.reason, detail: r.message },
      });
    } catch (e) {
      this.deps.log.error({ err: (e as Error).message }, 'could not record an API client integrity finding');
    }
  }
}

const UNSEALED = CLIENT_REFUSAL_REASONS.unsealed;

function refusal(reason: ClientRefusalReason, message: string): Extract<ClientVerdict, { ok: false }> {
  return { ok: false, reason, message };
}

function refusalOf(
  client: Pick<StoredClient, 'id' | 'name'>,
  v: Extract<ClientVerdict, { ok: false }>,
): ClientRefusal {
  return { clientId: client.id, name: client.name, reason: v.reason, message: v.message };
}

function findingKey(r: ClientRefusal): string {
  return `${r.clientId}|${r.reason}`;
}

/** The row's seal input, or null when its values cannot be put in one (not valid JSON values). */
function sealInputOf(client: ClientSealFacts): Buffer | null {
  try {
    return clientSealInput(client);
  } catch {
    return null;
  }
}

/** What a row's verdict is remembered by: its sealed facts and its seal. */
function digestOf(input: Buffer, seal: string): string {
  return createHash('sha256').update(input).update('\0').update(seal).digest('base64url');
}
