import {
  canListAllObjects,
  isKeySeal,
  type TokenObject,
  type TokenObjectAttributes,
} from '../backends/backend-objects';
import type { BackendObject, KeyBackend } from '../backends/key-backend';
import { backendType } from '../backends/registry';
import { KeywardenError, type ErrorCode } from '../policy/errors';
import type { HsmFindingKind } from '../policy/hsm-findings';
import type { KeyRecord } from '../policy/key';
import { effectiveState, isPublished } from '../policy/key-state';
import type { KeywardenConfig } from '../policy/scope';
import { destroyDueAt } from '../policy/timeline';
import { coreDumpLimit } from '../process-hardening';
import { AUDIT_SCOPE, auditKeyDestroyDueAt } from '../policy/audit-key';
import type { LifecycleContext } from './context';
import { nameObject, partialObjects, tokenHygiene } from './token-hygiene';

/** What `hsm check` fails on (I3 hygiene): the catalogue with meanings is `HSM_FINDING_KINDS`. */
export type { HsmFindingKind } from '../policy/hsm-findings';

export interface HsmFinding {
  backend: string;
  kind: HsmFindingKind;
  /** The object's label (or the key's kid for row findings). */
  subject: string;
  /** CKA_ID (hex) when the finding is about an object. */
  id: string | null;
  kid: string | null;
  message: string;
}

/** One object as `hsm check` lists it; never key material. */
export interface HsmObject {
  class: TokenObject['class'];
  id: string;
  label: string;
  keyType: string | null;
  /** CKA_APPLICATION of a data object (`keywarden-key-seal/v1` for a key seal), else null. */
  application: string | null;
  attributes: TokenObjectAttributes;
  /** The key row it belongs to, when there is one. */
  kid: string | null;
  scope: string | null;
}

export interface HsmBackendReport {
  backend: string;
  /** The backend's registered type; `unknown` when it could not be opened. */
  type: string;
  /** True when every object on the token was listed (PKCS#11), not only keywarden's. */
  allObjects: boolean;
  objects: HsmObject[];
  /**
   * Why the backend could not be checked at all (opened or listed), e.g. BACKEND_PIN_INCORRECT;
   * `objects` is then empty because nothing was listed, not because the token is empty.
   */
  error?: { code: ErrorCode; message: string };
}

export interface HsmCheckReport {
  ok: boolean;
  checkedAt: string;
  backends: HsmBackendReport[];
  findings: HsmFinding[];
}

/** Objects of a backend in one shape: every token object (PKCS#11) or keywarden's (others). */
function fromBackendObject(o: BackendObject): TokenObject {
  return {
    class: o.kind === 'key' ? 'private' : o.kind,
    id: o.ref.ref.id ?? o.ref.ref.name ?? o.label,
    label: o.label,
    keyType: null,
    scope: o.scope,
    keyId: o.keyId,
    attributes: o.attributes,
  };
}

function rowFor(o: TokenObject, rows: readonly KeyRecord[]): KeyRecord | undefined {
  return rows.find(
    (r) =>
      (r.backendRef.ref.id !== undefined && r.backendRef.ref.id === o.id) ||
      (o.keyId !== null && r.id === o.keyId),
  );
}

/**
 * A half-written object: its class cannot be read (a creation cut short: SoftHSM2 writes the
 * object file before its attributes); or it is keywarden's by its label or its row's CKA_ID but
 * is neither a key of the pair nor a complete seal (a data object under keywarden's label without
 * the seal's CKA_APPLICATION, a key without its label).
 */
function isPartialObject(o: TokenObject, row: KeyRecord | undefined): boolean {
  if (o.incomplete) return true;
  const isKey = o.class === 'private' || o.class === 'public';
  if (o.keyId !== null && !isKey && !isKeySeal(o)) return true;
  return row !== undefined && isKey && o.label === '';
}

/**
 * What `hsm check` says of a half-written object: whose it provably is (keywarden's random CKA_ID
 * or exact label of a key row), and what happens to it.
 */
function partialObjectMessage(o: TokenObject, row: KeyRecord | undefined): string {
  const what = o.incomplete
    ? `an object with no readable class (label ${o.label ? `'${o.label}'` : 'none'}, id ${o.id || 'none'})`
    : nameObject(o);
  if (row?.status === 'generating') {
    return (
      `${what}: half-written by an interrupted generation of key row ${row.id} (scope ${row.scope}); ` +
      'the next reconcile removes it with that row'
    );
  }
  if (row) {
    return `${what}: half-written, with the CKA_ID of key ${row.kid ?? row.id} (scope ${row.scope}); it is destroyed with that key`;
  }
  if (o.keyId !== null)
    return `${what}: half-written under keywarden's label, with no key row: an orphan, left alone`;
  return (
    `${what}: half-written (e.g. by a process killed while the token created it); nothing proves whose it ` +
    "is, so keywarden leaves it alone: remove it with the HSM's tools (SoftHSM2: its file in the token directory)"
  );
}

function destroyDue(config: KeywardenConfig, k: KeyRecord): { at: Date; note: string } {
  if (k.scope === AUDIT_SCOPE) return { at: auditKeyDestroyDueAt(k), note: '' };
  const scope = config.scopes.find((s) => s.name === k.scope);
  if (scope) return { at: destroyDueAt(scope.policy, k), note: '' };
  // Without its policy, the object is due as soon as the key is dead.
  const end = Math.min(k.expiresAt.getTime(), k.revokedAt?.getTime() ?? Infinity);
  return { at: new Date(end), note: ` (scope ${k.scope} is no longer configured)` };
}

/**
 * Lists every object on each configured backend and checks I3 hygiene: every private key
 * sensitive, never extractable, always so; no keywarden-labelled object without a key row; no
 * object left past its key's destroy time; no published key without its object. On PKCS#11 tokens
 * (every object listed) also: private keys that serve uses other than signing, can be modified or
 * copied; modifiable key seals; unlabelled objects; partial key pairs and seals without keys.
 */
export async function checkHsm(
  ctx: Pick<LifecycleContext, 'config' | 'keys' | 'backend' | 'clock'>,
): Promise<HsmCheckReport> {
  const now = ctx.clock.now();
  const allRows = await ctx.keys.listAll();
  const findings: HsmFinding[] = [];
  const backends: HsmBackendReport[] = [];
  for (const name of Object.keys(ctx.config.backends)) {
    const find = (
      kind: HsmFindingKind,
      subject: string,
      id: string | null,
      kid: string | null,
      message: string,
    ) => findings.push({ backend: name, kind, subject, id, kid, message });
    let backend: KeyBackend;
    let objects: TokenObject[];
    try {
      backend = await ctx.backend(name);
      objects = canListAllObjects(backend)
        ? await backend.listAllObjects()
        : (await backend.list()).map(fromBackendObject);
    } catch (e) {
      const code: ErrorCode = e instanceof KeywardenError ? e.code : 'BACKEND_ERROR';
      const message = (e as Error)?.message ?? String(e);
      find('unavailable', name, null, null, `backend ${name} could not be checked: ${code}: ${message}`);
      backends.push({
        backend: name,
        type: 'unknown',
        allObjects: false,
        objects: [],
        error: { code, message },
      });
      continue;
    }
    const rows = allRows.filter((r) => r.backendRef.backend === name);
    // Usage, mutability, labels and partial key pairs are token-level checks: only a backend that
    // lists every object with its PKCS#11 attributes can answer them.
    const everyObject = canListAllObjects(backend);
    const listed: HsmObject[] = [];
    for (const o of objects) {
      const row = rowFor(o, rows);
      listed.push({
        class: o.class,
        id: o.id,
        label: o.label,
        keyType: o.keyType,
        application: o.application ?? null,
        attributes: o.attributes,
        kid: row?.kid ?? null,
        scope: row?.scope ?? o.scope,
      });
      const what = nameObject(o);
      if (o.class === 'private') {
        const a = o.attributes;
        if (a.extractable !== false)
          find('extractable', o.label, o.id, row?.kid ?? null, `${what} is extractable`);
        if (a.sensitive !== true)
          find('not-sensitive', o.label, o.id, row?.kid ?? null, `${what} is not sensitive`);
        if (a.alwaysSensitive !== true) {
          find(
            'not-always-sensitive',
            o.label,
            o.id,
            row?.kid ?? null,
            `${what} has not always been sensitive`,
          );
        }
        if (a.neverExtractable !== true) {
          find('not-never-extractable', o.label, o.id, row?.kid ?? null, `${what} has been extractable`);
        }
      }
      if (isPartialObject(o, row)) {
        find('partial-object', o.label, o.id || null, row?.kid ?? null, partialObjectMessage(o, row));
        continue; // one finding says what it is; its other attributes are those of a half-made thing
      }
      if (everyObject) {
        tokenHygiene(o, what, (kind, message) =>
          find(kind, o.label, o.id || null, row?.kid ?? null, message),
        );
      }
      if (o.keyId !== null && !row) {
        find('orphan', o.label, o.id, null, `${what} carries keywarden's label but no key row matches it`);
      }
    }
    if (everyObject) {
      for (const p of partialObjects(objects)) {
        find(p.kind, p.object.label, p.object.id || null, rowFor(p.object, rows)?.kid ?? null, p.message);
      }
    }
    for (const k of rows) {
      if (k.status !== 'ready') continue;
      const present = objects.filter((o) => rowFor(o, [k]));
      const due = destroyDue(ctx.config, k);
      if (present.length > 0 && due.at <= now) {
        find(
          'overdue-destroy',
          k.kid ?? k.id,
          present[0]?.id ?? null,
          k.kid,
          `key ${k.kid} (scope ${k.scope}) was due for destruction at ${due.at.toISOString()}${due.note} but ${present.length} object(s) remain`,
        );
      }
      if (
        k.destroyedAt === null &&
        isPublished(effectiveState(k, now)) &&
        !present.some((o) => o.class === 'private')
      ) {
        find(
          'missing-object',
          k.kid ?? k.id,
          null,
          k.kid,
          `published key ${k.kid} (scope ${k.scope}) has no private key object`,
        );
      }
    }
    backends.push({
      backend: name,
      type: backend.type,
      allObjects: canListAllObjects(backend),
      objects: listed,
    });
  }
  return { ok: findings.length === 0, checkedAt: now.toISOString(), backends, findings };
}

/** One backend as `hsm status` shows it: its type's own facts (module and token, vault, ...). */
export type HsmStatusEntry = { backend: string; type: string; summary: string[] } & Record<string, unknown>;

export interface HsmStatusReport {
  backends: HsmStatusEntry[];
  /** This process's core-dump limit (`serve` sets its own to 0 at start; I3). */
  coreDumpLimit: string | null;
}

/** Each backend as its type describes it without logging in (PKCS#11: module, slots, tokens, free space). */
export function hsmStatus(config: Pick<KeywardenConfig, 'backends'>): HsmStatusReport {
  const backends = Object.values(config.backends).map((b): HsmStatusEntry => {
    const { details, summary } = backendType(b.type).status(b);
    return { backend: b.name, type: b.type, ...details, summary };
  });
  return { backends, coreDumpLimit: coreDumpLimit() };
}
