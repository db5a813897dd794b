import { randomBytes, randomUUID } from 'node:crypto';
import { KeywardenError } from '../policy/errors';
import {
  clientRowVersion,
  ClientRepository,
  type ClientRecord,
  type Grant,
} from '../store/client-repository';
import { requireScope, type LifecycleContext } from './context';
import { hashSecret, verifySecret } from './secret-hash';

export type { Grant };

/** What a client may do on a scope: `sign` tokens, `verify` tokens (I6 validation). */
export const CLIENT_GRANTS: readonly Grant[] = ['sign', 'verify'];

/** A client as shown to operators: everything but the secret hash. */
export interface ClientSummary {
  id: string;
  name: string;
  grants: Record<string, Grant[]>;
  createdAt: Date;
  updatedAt: Date;
}

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

function summary(c: ClientRecord): ClientSummary {
  return { id: c.id, name: c.name, grants: c.grants, createdAt: c.createdAt, updatedAt: c.updatedAt };
}

function clients(ctx: LifecycleContext): ClientRepository {
  return new ClientRepository(ctx.ds);
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
  const record: ClientRecord = {
    id,
    name,
    secretHash: await hashSecret(secret),
    grants: normalised,
    createdAt: now,
    updatedAt: now,
  };
  try {
    await ctx.ds.transaction(async (m) => {
      await repo.insert(record, m);
      await ctx.audit.record(
        { type: 'client.created', actor, data: { clientId: id, name, grants: normalised } },
        m,
      );
    });
  } catch (e) {
    // Two operators adding the same name at once: the unique index decides.
    if (await repo.findByName(name))
      throw new KeywardenError('CLIENT_EXISTS', `client "${name}" already exists`);
    throw new KeywardenError('STORE_ERROR', `cannot add client: ${(e as Error).message}`, { cause: e });
  }
  return { client: summary(record), secret };
}

/** Every client, by name. */
export async function listClients(ctx: LifecycleContext): Promise<ClientSummary[]> {
  return (await clients(ctx).list()).map(summary);
}

async function requireClient(repo: ClientRepository, nameOrId: string): Promise<ClientRecord> {
  const c = (await repo.findByName(nameOrId)) ?? (await repo.findById(nameOrId));
  if (!c) throw new KeywardenError('CLIENT_NOT_FOUND', `no client named or with id "${nameOrId}"`);
  return c;
}

/** One client by name or id, or CLIENT_NOT_FOUND. */
export async function showClient(ctx: LifecycleContext, nameOrId: string): Promise<ClientSummary> {
  return summary(await requireClient(clients(ctx), nameOrId));
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
  await ctx.ds.transaction(async (m) => {
    if (!(await repo.delete(c.id, m)))
      throw new KeywardenError('CLIENT_NOT_FOUND', `client "${c.name}" is gone`);
    await ctx.audit.record({ type: 'client.removed', actor, data: { clientId: c.id, name: c.name } }, m);
  });
  return summary(c);
}

/** Replaces a client's secret; the old one stops working within the same bound as removal. */
export async function rotateClientSecret(
  ctx: LifecycleContext,
  nameOrId: string,
  actor: string,
): Promise<IssuedClientSecret> {
  const repo = clients(ctx);
  const c = await requireClient(repo, nameOrId);
  const secret = newSecret(c.id);
  const hash = await hashSecret(secret);
  const now = ctx.clock.now();
  await ctx.ds.transaction(async (m) => {
    if (!(await repo.updateSecret(c.id, hash, now, m))) {
      throw new KeywardenError('CLIENT_NOT_FOUND', `client "${c.name}" is gone`);
    }
    await ctx.audit.record(
      { type: 'client.secret-rotated', actor, data: { clientId: c.id, name: c.name } },
      m,
    );
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
 * names no client, or does not match the stored hash. One primary-key read plus one scrypt:
 * deliberately slow, so callers cache the answer (see src/http/auth.ts).
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
  return { id: c.id, name: c.name, grants: c.grants, version: clientRowVersion(c) };
}

/** Every client's id and row version (clientRowVersion), polled by daemons. */
export function clientVersions(ctx: LifecycleContext): Promise<Map<string, string>> {
  return clients(ctx).versions();
}

/** True when the client holds `grant` on `scope`. */
export function hasGrant(client: AuthenticatedClient, scope: string, grant: Grant): boolean {
  return client.grants[scope]?.includes(grant) === true;
}
