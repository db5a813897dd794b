import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BackendKeyFacts, InventoryEntry, KeyBackend, KeyInspection } from '../backends/key-backend';
import type { Clock } from '../policy/clock';
import type { KeyRecord, PublicJwk } from '../policy/key';
import { keyPolicyProblems, type KeyRefusal, type KeyRefusalReason } from '../policy/key-integrity';
import { decodeSeal, sealInput, type SealedFacts } from '../policy/key-seal';
import { effectiveState } from '../policy/key-state';
import type { KeywardenConfig, ScopeConfig } from '../policy/scope';
import type { AuditLog } from './ports';
import { checkSeals, importPublicJwk, type SealCheck } from './seal-checks';
import { thumbprintNow } from '../policy/thumbprint';

/** A backend key object with keywarden's label whose row does not exist (deleted, or a restored backup). */
export interface MissingRow {
  backend: string;
  keyId: string;
  scope: string | null;
  label: string;
  ref: InventoryEntry['ref'];
}

/** What one integrity pass over the store's rows found. */
export interface IntegrityReport {
  /**
   * Rows the process may use: live rows confirmed against their backend, and rows already dead
   * by their own times (revoked or expired: they can only make a token fail, never pass).
   */
  usable: KeyRecord[];
  refused: KeyRefusal[];
  missingRows: MissingRow[];
  checkedAt: Date;
}

export interface KeyIntegrityDeps {
  config: KeywardenConfig;
  clock: Clock;
  log: Logger;
  backend(name: string): Promise<KeyBackend>;
  /** Whether a row with this id exists now (re-checks a missing-row candidate after the listing). */
  rowExists(id: string): Promise<boolean>;
  /** Where findings are recorded; null in processes that only log them (workers, one-shot commands). */
  audit: AuditLog | null;
}

/** The verdict on one row whose backend facts were read. */
export type Judgement = { ok: true } | { ok: false; reason: KeyRefusalReason; message: string };

/**
 * The integrity check of key rows against their backends (docs/security-model.md): the store is
 * not trusted with what makes a key valid. Before any process publishes, signs or verifies with a
 * live row, the backend must hold a private key object at the row's reference whose label names
 * the row's scope and id, whose public key is the row's, and whose seal (the key's signature over
 * the row's facts, made in the backend at creation) verifies with that public key read from the
 * backend. A full pass (`check`) lists each backend once and runs the expensive part once per row
 * content (remembered by digest); a pass over changed rows (`checkChanged`) inspects each live
 * changed row at its own reference. The key cache says when each runs (key-cache.ts).
 */
export class KeyIntegrity {
  /** Row id -> digest of the content and object last confirmed. */
  private readonly confirmed = new Map<string, string>();
  /** Row id -> digest of a legacy row whose confirmation failed (see noteLegacyMismatch). */
  private readonly legacyMismatch = new Map<string, { digest: string; message: string }>();
  /** Findings already logged (and recorded) by this process. */
  private readonly reported = new Set<string>();
  /**
   * The standing verdicts: the last full pass, amended by each pass over changed rows since.
   * `rows` is every row the passes read (a deleted one's reference is where its object is looked for).
   */
  private readonly rows = new Map<string, KeyRecord>();
  private readonly usable = new Map<string, KeyRecord>();
  private readonly refused = new Map<string, KeyRefusal>();
  private readonly missing = new Map<string, MissingRow>();
  private checkedAt: Date | null = null;
  private latest: IntegrityReport | null = null;
  private fullAt: Date | null = null;

  /** The configured scopes by name (built once: a pass over changed rows must not cost one per scope). */
  private readonly scopes: Map<string, ScopeConfig>;

  /** Seal checks fell back from worker threads to this thread: said once, as a warning. */
  private readonly threadFailure = (e: Error): void => {
    if (this.threadFailureSaid) return;
    this.threadFailureSaid = true;
    this.deps.log.warn(
      { err: e.message },
      'seal checks cannot run on worker threads: checking them on the event loop (slower)',
    );
  };
  private threadFailureSaid = false;

  constructor(private readonly deps: KeyIntegrityDeps) {
    this.scopes = new Map(deps.config.scopes.map((s) => [s.name, s]));
  }

  /** The standing report: the last full pass as amended by the passes over changed rows since (null before the first). */
  get report(): IntegrityReport | null {
    if (!this.latest && this.checkedAt) {
      this.latest = {
        usable: [...this.usable.values()],
        refused: [...this.refused.values()],
        missingRows: [...this.missing.values()],
        checkedAt: this.checkedAt,
      };
    }
    return this.latest;
  }

  /** When the last full pass (every row, each backend's inventory) ran; null before the first. */
  get lastFullCheckAt(): Date | null {
    return this.fullAt;
  }

  /**
   * Checks every row, reporting new findings (error log line and, where configured, an audit
   * record, once per finding per process). Never throws for a backend's failure: its rows that
   * were confirmed before stay usable, the others wait (`backend-unavailable`).
   */
  async check(rows: readonly KeyRecord[]): Promise<IntegrityReport> {
    const now = this.deps.clock.now();
    const scopes = this.scopes;
    const usable: KeyRecord[] = [];
    const refused: KeyRefusal[] = [];
    const refuse = (row: KeyRecord, reason: KeyRefusalReason, message: string) =>
      refused.push(refusalOf(row, reason, message));

    const candidates = new Map<
      string,
      { row: KeyRecord; identity: string; input: Buffer; digest: string }[]
    >();
    for (const row of rows) {
      const live = await this.triage(row, scopes, now, usable, refuse);
      if (!live) continue;
      const { backend, identity } = live;
      const list = candidates.get(backend.name) ?? [];
      const input = sealInput(row as SealedRow);
      list.push({ row, identity, input, digest: digestOf(input, identity) });
      candidates.set(backend.name, list);
    }

    const ids = new Set(rows.map((r) => r.id));
    const missingRows: MissingRow[] = [];
    for (const name of Object.keys(this.deps.config.backends)) {
      const list = candidates.get(name) ?? [];
      let inventory: Map<string, InventoryEntry>;
      let backend: KeyBackend;
      try {
        backend = await this.deps.backend(name);
        inventory = new Map((await backend.inventory()).map((e) => [e.identity, e]));
      } catch (e) {
        for (const c of list) {
          if (this.confirmed.get(c.row.id) === c.digest) usable.push(c.row);
          else refuse(c.row, 'backend-unavailable', `backend ${name}: ${(e as Error).message}`);
        }
        continue;
      }
      const toInspect: typeof list = [];
      for (const c of list) {
        const entry = inventory.get(c.identity);
        const legacy = this.legacyMismatch.get(c.row.id);
        if (!entry) refuse(c.row, 'object-missing', `backend ${name} holds no private key at its reference`);
        else if (entry.keyId !== c.row.id || entry.scope !== c.row.scope) {
          refuse(c.row, 'label-mismatch', labelMismatch(c.row, entry));
        } else if (legacy?.digest === c.digest) refuse(c.row, 'legacy-mismatch', legacy.message);
        else if (!entry.sealed) refuse(c.row, 'unsealed', UNSEALED);
        else if (this.confirmed.get(c.row.id) === c.digest) usable.push(c.row);
        else toInspect.push(c);
      }
      let answers: KeyInspection[] = [];
      try {
        answers = await backend.inspectKeys(
          toInspect.map((c) => ({ ref: c.row.backendRef, alg: c.row.alg })),
        );
      } catch (e) {
        for (const c of toInspect)
          refuse(c.row, 'backend-unavailable', `backend ${name}: ${(e as Error).message}`);
        toInspect.length = 0;
      }
      const verdicts = await judgeInspections(
        toInspect.map((c, i) => ({ row: c.row, answer: answers[i], input: c.input })),
        this.threadFailure,
      );
      for (const [i, c] of toInspect.entries()) {
        const verdict = verdicts[i]!;
        if (verdict.ok) {
          this.confirmed.set(c.row.id, c.digest);
          usable.push(c.row);
        } else refuse(c.row, verdict.reason, verdict.message);
      }
      missingRows.push(...(await this.missingRowsIn(name, inventory.values(), (keyId) => !ids.has(keyId))));
    }

    for (const id of [...this.confirmed.keys()]) if (!ids.has(id)) this.confirmed.delete(id);
    const report: IntegrityReport = { usable, refused, missingRows, checkedAt: now };
    this.rows.clear();
    for (const row of rows) this.rows.set(row.id, row);
    this.usable.clear();
    for (const row of usable) this.usable.set(row.id, row);
    this.refused.clear();
    for (const r of refused) this.refused.set(r.keyId, r);
    this.missing.clear();
    for (const m of missingRows) this.missing.set(missingKey(m), m);
    this.checkedAt = now;
    this.fullAt = now;
    this.latest = report;
    await this.reportFindings(report);
    return report;
  }

  /**
   * Checks the rows named in `ids` only (the rows changed since the last pass; an id absent from
   * `rows` was deleted), amending the standing report, and returns the verdicts on them. A dead
   * row needs no backend; a live one is inspected at its own reference (inspectKeys), never
   * through a listing of the backend, and is usable only if that inspection vouches for it now,
   * whatever was confirmed before. A deleted row's backend is listed once, to report its object
   * as a missing row. Rows not named keep their verdict until the next full pass (`check`).
   */
  async checkChanged(ids: readonly string[], rows: readonly KeyRecord[]): Promise<IntegrityReport> {
    if (!this.checkedAt) throw new Error('checkChanged before the first full check');
    const now = this.deps.clock.now();
    const scopes = this.scopes;
    const usable: KeyRecord[] = [];
    const refused: KeyRefusal[] = [];
    const refuse = (row: KeyRecord, reason: KeyRefusalReason, message: string) =>
      refused.push(refusalOf(row, reason, message));
    const present = new Set(rows.map((r) => r.id));
    const deleted: KeyRecord[] = [];
    for (const id of ids) {
      const before = this.rows.get(id);
      if (!present.has(id) && before) deleted.push(before);
      this.rows.delete(id);
      this.usable.delete(id);
      this.refused.delete(id);
      if (!present.has(id)) this.confirmed.delete(id);
    }

    const toInspect = new Map<string, { row: KeyRecord; input: Buffer; digest: string }[]>();
    for (const row of rows) {
      this.rows.set(row.id, row);
      const live = await this.triage(row, scopes, now, usable, refuse);
      if (!live) continue;
      const { backend } = live;
      const input = sealInput(row as SealedRow);
      const digest = digestOf(input, live.identity);
      const legacy = this.legacyMismatch.get(row.id);
      if (legacy?.digest === digest) {
        refuse(row, 'legacy-mismatch', legacy.message);
        continue;
      }
      const list = toInspect.get(backend.name) ?? [];
      list.push({ row, input, digest });
      toInspect.set(backend.name, list);
    }

    for (const [name, list] of toInspect) {
      const backend = await this.deps.backend(name);
      const inspect = (batch: typeof list) =>
        backend.inspectKeys(batch.map((c) => ({ ref: c.row.backendRef, alg: c.row.alg })));
      let answers: (KeyInspection | Error)[];
      try {
        answers = await inspect(list);
      } catch {
        // One row's reference can fail a whole batch: each alone, so only what fails is refused.
        answers = [];
        for (const c of list)
          answers.push(
            await inspect([c]).then(
              (a) => a[0] as KeyInspection,
              (x: Error) => x,
            ),
          );
      }
      const answered = list.flatMap((c, i) => {
        const answer = answers[i];
        return answer instanceof Error ? [] : [{ row: c.row, answer, input: c.input }];
      });
      const judged = await judgeInspections(answered, this.threadFailure);
      let j = 0;
      for (const [i, c] of list.entries()) {
        const answer = answers[i];
        if (answer instanceof Error) {
          // As in a full pass: a row confirmed with this very content stays usable while its backend is down.
          if (this.confirmed.get(c.row.id) === c.digest) usable.push(c.row);
          else refuse(c.row, 'backend-unavailable', `backend ${name}: ${answer.message}`);
          continue;
        }
        const verdict = judged[j++]!;
        if (verdict.ok) {
          this.confirmed.set(c.row.id, c.digest);
          usable.push(c.row);
        } else {
          this.confirmed.delete(c.row.id);
          refuse(c.row, verdict.reason, verdict.message);
        }
      }
    }

    for (const row of usable) this.usable.set(row.id, row);
    for (const r of refused) this.refused.set(r.keyId, r);
    // A row that exists again is not missing; a deleted row whose object remains is.
    for (const [key, m] of this.missing) if (present.has(m.keyId)) this.missing.delete(key);
    for (const m of await this.missingAfterDelete(deleted)) this.missing.set(missingKey(m), m);
    this.checkedAt = now;
    // Built when read (readiness, metrics): every usable row is not this pass's work.
    this.latest = null;
    const missingRows = [...this.missing.values()];
    await this.reportFindings({ refused: [...this.refused.values()], missingRows });
    return { usable, refused, missingRows, checkedAt: now };
  }

  /**
   * The entries of a backend's listing whose row does not exist, among those `candidate` names.
   * Each is asked of the store after the listing: a key made meanwhile has its row already (rows
   * are written before objects), so only a row that is really gone is reported missing.
   */
  private async missingRowsIn(
    backend: string,
    entries: Iterable<InventoryEntry>,
    candidate: (keyId: string) => boolean,
  ): Promise<MissingRow[]> {
    const found: MissingRow[] = [];
    for (const entry of entries) {
      if (entry.keyId === null || !candidate(entry.keyId)) continue;
      if (await this.deps.rowExists(entry.keyId).catch(() => true)) continue;
      found.push({ backend, keyId: entry.keyId, scope: entry.scope, label: entry.label, ref: entry.ref });
    }
    return found;
  }

  /** The objects of deleted rows that their backends still hold (one listing per backend concerned). */
  private async missingAfterDelete(deleted: readonly KeyRecord[]): Promise<MissingRow[]> {
    const byBackend = new Map<string, Set<string>>();
    for (const row of deleted) {
      if (!this.deps.config.backends[row.backendRef.backend]) continue;
      const ids = byBackend.get(row.backendRef.backend) ?? new Set<string>();
      ids.add(row.id);
      byBackend.set(row.backendRef.backend, ids);
    }
    const found: MissingRow[] = [];
    for (const [name, ids] of byBackend) {
      let inventory: InventoryEntry[];
      try {
        inventory = await (await this.deps.backend(name)).inventory();
      } catch (e) {
        // The next full pass lists it again.
        this.deps.log.warn(
          { backend: name, err: (e as Error).message },
          'could not list a backend after a row deletion',
        );
        continue;
      }
      found.push(...(await this.missingRowsIn(name, inventory, (keyId) => ids.has(keyId))));
    }
    return found;
  }

  /**
   * Records that a legacy row (made before sealing) failed its confirmation against the backend:
   * it is refused as `legacy-mismatch` until its content changes, and never sealed.
   */
  noteLegacyMismatch(row: KeyRecord, identity: string, message: string): void {
    this.legacyMismatch.set(row.id, { digest: rowDigest(row as SealedRow, identity), message });
  }

  /** The refusals of the last pass in one scope, by reason. */
  refusedIn(scope: string, reason?: KeyRefusalReason): KeyRefusal[] {
    return (this.report?.refused ?? []).filter((r) => r.scope === scope && (!reason || r.reason === reason));
  }

  /**
   * The first steps of checking a row, in a full pass and a changed-rows pass alike: a row that is
   * not ready or of no configured scope is used by nothing (the audit key's included); a dead row
   * (revoked, expired) is usable as it is; a row with a static problem or whose backend cannot be
   * opened or addressed is refused. Otherwise: the live row's backend and reference identity.
   */
  private async triage(
    row: KeyRecord,
    scopes: ReadonlyMap<string, ScopeConfig>,
    now: Date,
    usable: KeyRecord[],
    refuse: (row: KeyRecord, reason: KeyRefusalReason, message: string) => void,
  ): Promise<{ backend: KeyBackend; identity: string } | null> {
    const scope = scopes.get(row.scope);
    if (row.status !== 'ready' || !scope) return null;
    const state = effectiveState(row, now);
    if (state === 'revoked' || state === 'expired') {
      usable.push(row);
      return null;
    }
    const problem = this.staticProblem(row, scope);
    if (problem) {
      refuse(row, problem.reason, problem.message);
      return null;
    }
    const backend = await this.deps.backend(row.backendRef.backend).catch(() => null);
    if (!backend) {
      refuse(row, 'backend-unavailable', `backend ${row.backendRef.backend} could not be opened`);
      return null;
    }
    try {
      return { backend, identity: backend.refIdentity(row.backendRef) };
    } catch (e) {
      refuse(row, 'object-missing', `its backend reference is not usable: ${(e as Error).message}`);
      return null;
    }
  }

  /** Problems found without asking the backend: malformed row, broken policy, unknown backend. */
  private staticProblem(
    row: KeyRecord,
    scope: ScopeConfig,
  ): { reason: KeyRefusalReason; message: string } | null {
    if (row.kid === null || row.publicJwk === null) {
      return { reason: 'public-key-mismatch', message: 'a ready row without a public key' };
    }
    const problems = keyPolicyProblems(row, scope.policy);
    if (problems.length > 0) {
      return { reason: 'policy-violation', message: `scope ${scope.name}: ${problems.join('; ')}` };
    }
    if (!this.deps.config.backends[row.backendRef.backend]) {
      return { reason: 'backend-unknown', message: `backend ${row.backendRef.backend} is not configured` };
    }
    return null;
  }

  private async reportFindings(report: Pick<IntegrityReport, 'refused' | 'missingRows'>): Promise<void> {
    const current = new Set<string>();
    for (const r of report.refused) {
      const key = `refused|${r.keyId}|${r.reason}`;
      current.add(key);
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      // An unsealed row is the normal state of a key made before sealing, until reconcile
      // confirms and seals it: a warning, not an alarm. Everything else is an incident.
      const level = r.reason === 'unsealed' || r.reason === 'backend-unavailable' ? 'warn' : 'error';
      this.deps.log[level](
        {
          scope: r.scope,
          kid: r.kid,
          keyId: r.keyId,
          backend: r.backend,
          reason: r.reason,
          detail: r.message,
        },
        'key row refused: not published, never signs, verifies nothing',
      );
      if (level === 'error') {
        await this.record({
          type: 'key.integrity-failed',
          actor: 'system:integrity',
          scope: r.scope,
          kid: r.kid,
          data: { keyId: r.keyId, backend: r.backend, reason: r.reason, detail: r.message },
        });
      }
    }
    for (const m of report.missingRows) {
      const key = `missing|${m.backend}|${m.keyId}`;
      current.add(key);
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      this.deps.log.error(
        { backend: m.backend, scope: m.scope, keyId: m.keyId, label: m.label },
        'key row missing: the backend holds a keywarden key whose row is gone (deleted, or an old backup restored)',
      );
      await this.record({
        type: 'key.row-missing',
        actor: 'system:integrity',
        scope: m.scope,
        data: { backend: m.backend, keyId: m.keyId, label: m.label, ref: m.ref.ref },
      });
    }
    // A finding that went away (fixed, or the row changed) is reported again if it comes back.
    for (const key of [...this.reported]) if (!current.has(key)) this.reported.delete(key);
  }

  private async record(event: Parameters<AuditLog['record']>[0]): Promise<void> {
    if (!this.deps.audit) return;
    try {
      await this.deps.audit.record(event);
    } catch (e) {
      this.deps.log.error(
        { err: (e as Error).message, type: event.type },
        'could not record an integrity finding',
      );
    }
  }
}

const UNSEALED =
  'the backend holds no seal for this key: it was made before sealing (reconcile confirms it against ' +
  'the backend and seals it) or its making never finished';

export type SealedRow = KeyRecord & SealedFacts;

/** What a row's trust is remembered by: its sealed facts and the object it points at. */
export function rowDigest(row: SealedRow, identity: string): string {
  return digestOf(sealInput(row), identity);
}

/** rowDigest of a row whose seal input is at hand (a pass builds it once per row, for both uses). */
function digestOf(input: Buffer, identity: string): string {
  return createHash('sha256').update(input).update('\0').update(identity).digest('base64url');
}

function labelMismatch(row: KeyRecord, found: { keyId: string | null; scope: string | null }): string {
  return (
    `the backend object belongs to scope ${String(found.scope)}, row ${String(found.keyId)}; ` +
    `the row says scope ${row.scope}, id ${row.id}`
  );
}

/** What a backend answered for a row, short of its facts: the verdict, or the facts to judge. */
function factsOf(answer: KeyInspection | undefined): BackendKeyFacts | Judgement {
  if (!answer || answer.status === 'missing') {
    return {
      ok: false,
      reason: 'object-missing',
      message: 'the backend holds no private key at its reference',
    };
  }
  if (answer.status === 'unreadable')
    return { ok: false, reason: 'public-key-mismatch', message: answer.problem };
  return answer.facts;
}

/** Judges each row by what its backend answered for it (see judgeFactsAll). */
async function judgeInspections(
  items: readonly { row: KeyRecord; answer: KeyInspection | undefined; input: Buffer }[],
  onThreadFailure: (e: Error) => void,
): Promise<Judgement[]> {
  const verdicts = new Array<Judgement>(items.length);
  const toJudge: { at: number; row: SealedRow; facts: BackendKeyFacts; input: Buffer }[] = [];
  for (const [at, { row, answer, input }] of items.entries()) {
    const facts = factsOf(answer);
    if ('ok' in facts) verdicts[at] = facts;
    else toJudge.push({ at, row: row as SealedRow, facts, input });
  }
  const judged = await judgeFactsAll(toJudge, { onThreadFailure });
  for (const [i, { at }] of toJudge.entries()) verdicts[at] = judged[i]!;
  return verdicts;
}

/**
 * The row against its backend's facts: label, public key, then the seal verified with the public
 * key the backend holds (never the row's). Pure but for the signature check.
 */
export async function judgeFacts(row: SealedRow, facts: BackendKeyFacts): Promise<Judgement> {
  return (await judgeFactsAll([{ row, facts }]))[0]!;
}

const SEAL_INVALID: Judgement = {
  ok: false,
  reason: 'seal-invalid',
  message: "the key's seal does not verify over the row: its scope, times, alg or reference were changed",
};

/**
 * judgeFacts for many rows: everything but the seals' signatures here, then the signatures as one
 * batch (checkSeals: on worker threads for a start-up's worth of rows).
 */
export async function judgeFactsAll(
  items: readonly { row: SealedRow; facts: BackendKeyFacts; input?: Buffer }[],
  opts: { onThreadFailure?: (e: Error) => void } = {},
): Promise<Judgement[]> {
  const verdicts = new Array<Judgement>(items.length);
  const seals: SealCheck[] = [];
  const sealOf: number[] = [];
  for (const [at, { row, facts, input }] of items.entries()) {
    if (facts.seal === null) {
      // A key made before sealing: its identity is checked in full (the import included) here.
      const identity = await judgeIdentity(row, facts);
      verdicts[at] = identity.ok ? { ok: false, reason: 'unsealed', message: UNSEALED } : identity;
      continue;
    }
    const mismatch = identityMismatch(row, facts);
    if (mismatch) {
      verdicts[at] = mismatch;
      continue;
    }
    const signature = decodeSeal(facts.seal);
    if (!signature) {
      verdicts[at] = SEAL_INVALID;
      continue;
    }
    seals.push({ alg: row.alg, jwk: facts.publicJwk, input: input ?? sealInput(row), signature });
    sealOf.push(at);
  }
  const outcomes = await checkSeals(seals, { onThreadFailure: opts.onThreadFailure });
  for (const [i, outcome] of outcomes.entries()) {
    const row = items[sealOf[i]!]!.row;
    verdicts[sealOf[i]!] =
      outcome === 'valid'
        ? { ok: true }
        : outcome === 'invalid'
          ? SEAL_INVALID
          : { ok: false, reason: 'public-key-mismatch', message: publicKeyMismatch(row) };
  }
  return verdicts;
}

/**
 * The backend object is the row's: its label names the row's scope and id, its public key is the
 * row's (identityMismatch), and that key imports.
 */
export async function judgeIdentity(row: SealedRow, facts: BackendKeyFacts): Promise<Judgement> {
  const mismatch = identityMismatch(row, facts);
  if (mismatch) return mismatch;
  if (!importPublicJwk(facts.publicJwk)) {
    return { ok: false, reason: 'public-key-mismatch', message: publicKeyMismatch(row) };
  }
  return { ok: true };
}

/**
 * The identity checks that need no key import: the label names the row's scope and id, the public
 * key members are the row's, and the kid is their thumbprint.
 */
function identityMismatch(row: SealedRow, facts: BackendKeyFacts): Extract<Judgement, { ok: false }> | null {
  if (facts.keyId !== row.id || facts.scope !== row.scope) {
    return { ok: false, reason: 'label-mismatch', message: labelMismatch(row, facts) };
  }
  let kid: string | null;
  try {
    kid = thumbprintNow(facts.publicJwk);
  } catch {
    kid = null;
  }
  if (!jwkEquals(facts.publicJwk, row.publicJwk) || kid !== row.kid) {
    return { ok: false, reason: 'public-key-mismatch', message: publicKeyMismatch(row) };
  }
  return null;
}

function publicKeyMismatch(row: KeyRecord): string {
  return `the row's public key / kid ${row.kid} is not the backend object's`;
}

/** A refusal of `row`, for the report. */
function refusalOf(row: KeyRecord, reason: KeyRefusalReason, message: string): KeyRefusal {
  return { keyId: row.id, kid: row.kid, scope: row.scope, backend: row.backendRef.backend, reason, message };
}

/** The standing report's key for a missing row: one per backend object. */
function missingKey(m: MissingRow): string {
  return `${m.backend}|${m.keyId}`;
}

/** Same public key members (kty, crv, x, y, n, e), whatever else either carries. */
export function jwkEquals(a: PublicJwk, b: PublicJwk): boolean {
  return (['kty', 'crv', 'x', 'y', 'n', 'e'] as const).every((m) => a[m] === b[m]);
}
