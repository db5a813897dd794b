import { hash, randomBytes, randomUUID } from 'node:crypto';
import { KeywardenError } from '../policy/errors';
import {
  CLIENT_GRANTS,
  clientRowVersion,
  clientVersionsOf,
  type ClientRecord,
  type Grant,
  type StoredClient,
} from '../policy/clients';
import { sealedGrants } from '../policy/client-seal';
import { sealingAuditKey } from './client-seals';
import type { ClientVerdict } from './client-trust';
import { requireScope, type LifecycleContext } from './context';
import type { ClientStore } from './ports';
import { hashSecret, verifySecret } from './secret-hash';

export { CLIENT_GRANTS, type Grant };

/** A client as shown to operators: everything but the secret hash. */
export interface ClientSummary {
  id: string;
  name: string;
  grants: Record<string, Grant[]>;
  createdAt: Date;
  updatedAt: Date;
}

/** Whether an HSM key vouches for a client's row (`clients list`, `clients show`). */
export type ClientTrustState =
  /** Its seal verifies with the audit key `sealedBy`, read from the HSM. */
  | { trust: 'trusted'; sealedBy: string }
  /** Refused (401 like an unknown secret): see `reason` (policy/client-seal.ts) and `detail`. */
  | { trust: 'refused'; reason: string; detail: string };

/** A client with its trust, as `clients list` and `clients show` print it. */
export type CheckedClientSummary = ClientSummary & ClientTrustState;

/** A client together with its secret, returned exactly once (add, rotate-secret). */
export interface IssuedClientSecret {
  client: ClientSummary;
  /** `kw_<clientId>_<43 chars base64url>`; only its scrypt hash is stored. */
  secret: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const SECRET_RE = new RegExp(`^kw_(${UUID})_[A-Za-z0-9_-]{43}$`);
const SECRET_RANDOM_BYTES = 32;

/**
 * The client id inside a presented secret, or null when the text is not shaped like one.
 * The id makes lookup one primary-key read instead of a scan over every hash.
 */
export function clientIdOfSecret(secret: string): string | null {
  if (secret.length > 200) return null;
  return SECRET_RE.exec(secret)?.[1] ?? null;
}

function newSecret(clientId: string): string {
  return `kw_${clientId}_${randomBytes(SECRET_RANDOM_BYTES).toString('base64url')}`;
}

/** What operators see of a row (grants as sealed: a value that is not grants shows as none). */
export function summary(
  c: Pick<StoredClient, 'id' | 'name' | 'grants' | 'createdAt' | 'updatedAt'>,
): ClientSummary {
  const grants = (sealedGrants(c.grants) ?? {}) as Record<string, Grant[]>;
  return { id: c.id, name: c.name, grants, createdAt: c.createdAt, updatedAt: c.updatedAt };
}

function clients(ctx: LifecycleContext): ClientStore {
  return ctx.store.clients;
}

function trustState(v: ClientVerdict): ClientTrustState {
  return v.ok
    ? { trust: 'trusted', sealedBy: v.kid }
    : { trust: 'refused', reason: v.reason, detail: v.message };
}

/**
 * Checks and normalises grants: every scope must be configured, every grant `sign` or
 * `verify`, and at least one grant overall (a client that may do nothing is a typo).
 */
export function normaliseGrants(
  ctx: Pick<LifecycleContext, 'config'>,
  grants: Record<string, readonly string[]>,
): Record<string, Grant[]> {
  const out: Record<string, Grant[]> = {};
  for (const [scope, list] of Object.entries(grants)) {
    requireScope(ctx, scope);
    const set = new Set<Grant>();
    for (const g of list) {
      if (!(CLIENT_GRANTS as readonly string[]).includes(g)) {
        throw new KeywardenError(
          'REQUEST_INVALID',
          `unknown grant "${g}" for scope ${scope} (grants: ${CLIENT_GRANTS.join(', ')})`,
        );
      }
      set.add(g as Grant);
    }
    if (set.size > 0) out[scope] = CLIENT_GRANTS.filter((g) => set.has(g));
  }
  if (Object.keys(out).length === 0) {
    throw new KeywardenError('REQUEST_INVALID', 'a client needs at least one grant on one scope');
  }
  return out;
}

/** Creates an API client and returns its secret, which is never retrievable again. */
export async function addClient(
  ctx: LifecycleContext,
  name: string,
  grants: Record<string, readonly string[]>,
  actor: string,
): Promise<IssuedClientSecret> {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      'a client name is 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit',
    );
  }
  const normalised = normaliseGrants(ctx, grants);
  const repo = clients(ctx);
  if (await repo.findByName(name))
    throw new KeywardenError('CLIENT_EXISTS', `client "${name}" already exists`);
  const id = randomUUID();
  const secret = newSecret(id);
  const now = ctx.clock.now();
  const facts = { id, name, secretHash: await hashSecret(secret), grants: normalised, createdAt: now };
  // The audit key vouches for the row (in the HSM, before anything is written): without its
  // seal no daemon would accept the secret.
  const sealer = await sealingAuditKey(ctx, actor);
  const record: ClientRecord = { ...facts, updatedAt: now, seal: await sealer.seal(facts) };
  try {
    await ctx.store.transaction(async (tx) => {
      await tx.clients.insert(record);
      await tx.audit.record({
        type: 'client.created',
        actor,
        data: { clientId: id, name, grants: normalised, sealedBy: sealer.kid },
      });
    });
  } catch (e) {
    // Two operators adding the same name at once: the unique index decides.
    if (await repo.findByName(name))
      throw new KeywardenError('CLIENT_EXISTS', `client "${name}" already exists`);
    throw new KeywardenError('STORE_ERROR', `cannot add client: ${(e as Error).message}`, { cause: e });
  }
  return { client: summary(record), secret };
}

/**
 * Every client, by name, with its trust (each row checked against the audit key's seal). Rows are
 * read as stored, so one edited by hand is listed (and refused) rather than failing the listing.
 */
export async function listClients(ctx: LifecycleContext): Promise<CheckedClientSummary[]> {
  const rows = (await clients(ctx).scan()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: CheckedClientSummary[] = [];
  for (const c of rows) out.push({ ...summary(c), ...trustState(await ctx.clientTrust.judge(c)) });
  return out;
}

async function requireClient(repo: ClientStore, nameOrId: string): Promise<ClientRecord> {
  const c = (await repo.findByName(nameOrId)) ?? (await repo.findById(nameOrId));
  if (!c) throw new KeywardenError('CLIENT_NOT_FOUND', `no client named or with id "${nameOrId}"`);
  return c;
}

/** One client by name or id, with its trust, or CLIENT_NOT_FOUND. */
export async function showClient(ctx: LifecycleContext, nameOrId: string): Promise<CheckedClientSummary> {
  const c = await requireClient(clients(ctx), nameOrId);
  return { ...summary(c), ...trustState(await ctx.clientTrust.judge(c)) };
}

/**
 * Removes a client. Daemons drop its cached authentication on their next poll of the clients
 * table (ClientAuthenticator: within `server.keyRefreshSeconds`), after which it gets 401.
 */
export async function removeClient(
  ctx: LifecycleContext,
  nameOrId: string,
  actor: string,
): Promise<ClientSummary> {
  const repo = clients(ctx);
  const c = await requireClient(repo, nameOrId);
  await ctx.store.transaction(async (tx) => {
    if (!(await tx.clients.delete(c.id)))
      throw new KeywardenError('CLIENT_NOT_FOUND', `client "${c.name}" is gone`);
    await tx.audit.record({ type: 'client.removed', actor, data: { clientId: c.id, name: c.name } });
  });
  return summary(c);
}

/**
 * Replaces a client's secret; the old one stops working within the same bound as removal. The new
 * row is sealed by the audit key in the same operation. Only a client whose row an HSM key vouches
 * for now can be rotated (CLIENT_UNTRUSTED otherwise): sealing a new secret over grants the store
 * made up would bless them.
 */
export async function rotateClientSecret(
  ctx: LifecycleContext,
  nameOrId: string,
  actor: string,
): Promise<IssuedClientSecret> {
  const repo = clients(ctx);
  const c = await requireClient(repo, nameOrId);
  const verdict = await ctx.clientTrust.judge(c);
  if (!verdict.ok) {
    throw new KeywardenError(
      'CLIENT_UNTRUSTED',
      `client "${c.name}" is refused (${verdict.reason}: ${verdict.message}), so its secret is not rotated: ` +
        `check its grants (keywarden clients show ${c.name}) and vouch for it with ` +
        `\`keywarden clients seal ${c.name}${verdict.reason === 'unsealed' ? '' : ' --force'}\`, or remove it`,
    );
  }
  const secret = newSecret(c.id);
  const secretHash = await hashSecret(secret);
  const now = ctx.clock.now();
  const sealer = await sealingAuditKey(ctx, actor);
  const seal = await sealer.seal({ ...c, secretHash });
  await ctx.store.transaction(async (tx) => {
    if (!(await tx.clients.updateSecret(c.id, c.secretHash, { secretHash, seal }, now))) {
      if (!(await tx.clients.findById(c.id)))
        throw new KeywardenError('CLIENT_NOT_FOUND', `client "${c.name}" is gone`);
      throw new KeywardenError(
        'LOCK_BUSY',
        `client "${c.name}" got another secret meanwhile; nothing changed: run the command again`,
      );
    }
    await tx.audit.record({
      type: 'client.secret-rotated',
      actor,
      data: { clientId: c.id, name: c.name, sealedBy: sealer.kid },
    });
  });
  return { client: summary({ ...c, updatedAt: now }), secret };
}

/** An authenticated API client: who it is and what it may do. */
export interface AuthenticatedClient {
  id: string;
  name: string;
  grants: Readonly<Record<string, readonly Grant[]>>;
  /** The row's clientRowVersion when the secret was checked: a cached answer is only as good as this. */
  version: string;
}

/**
 * The client a presented secret belongs to, or null when the secret is not shaped like one,
 * names no client, does not match the stored hash, or matches a row no HSM key vouches for (its
 * seal by the audit key does not verify: ClientTrust, which reports it). One primary-key read plus
 * one scrypt, deliberately slow, so callers cache the answer (see src/http/auth.ts); the seal check
 * is remembered per row content, so the HSM is asked once per content, not per check.
 */
export async function checkClientSecret(
  ctx: LifecycleContext,
  secret: string,
): Promise<AuthenticatedClient | null> {
  const id = clientIdOfSecret(secret);
  if (id === null) return null;
  let c: ClientRecord | null;
  try {
    c = await clients(ctx).findById(id);
  } catch (e) {
    throw new KeywardenError('STORE_ERROR', `cannot read API clients: ${(e as Error).message}`, { cause: e });
  }
  if (!c || !(await verifySecret(secret, c.secretHash))) return null;
  let verdict: ClientVerdict;
  try {
    verdict = await ctx.clientTrust.admit(c);
  } catch (e) {
    throw new KeywardenError('STORE_ERROR', `cannot read the audit keys: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (!verdict.ok) return null;
  return { id: c.id, name: c.name, grants: c.grants, version: clientRowVersion(c) };
}

/** Every client's id and row version (clientRowVersion), polled by daemons. */
export function clientVersions(ctx: LifecycleContext): Promise<Map<string, string>> {
  return clients(ctx).versions();
}

/**
 * One poll of the clients table for a process that authenticates: every row's version, and a
 * digest of them all (`marker`). When the marker differs from `previous`, every row is checked
 * against its seal (ClientTrust.check: findings logged once per process, and recorded by the
 * scheduling process), so a row written behind keywarden's back is reported within one poll even
 * if its secret is never presented.
 */
export async function pollClients(
  ctx: LifecycleContext,
  previous: string | null,
): Promise<{ marker: string; versions: Map<string, string> }> {
  const rows = await clients(ctx).scan();
  const versions = clientVersionsOf(rows);
  const marker = hash('sha256', [...versions].map(([id, v]) => `${id}:${v};`).join(''), 'base64url');
  if (marker !== previous) await ctx.clientTrust.check(rows);
  return { marker, versions };
}

/** True when the client holds `grant` on `scope`. */
export function hasGrant(client: AuthenticatedClient, scope: string, grant: Grant): boolean {
  return client.grants[scope]?.includes(grant) === true;
}
