import { createHash, hash, randomBytes, randomUUID, X509Certificate } from 'node:crypto';
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
  /** How it authenticates: a bearer secret, a client certificate (mutual TLS), or both. */
  auth: ClientAuthMethod[];
  /** The SPKI SHA-256 (base64url) of the certificate it is bound to, or null. */
  certSpkiSha256: string | null;
  grants: Record<string, Grant[]>;
  createdAt: Date;
  updatedAt: Date;
}

/** How an API client proves who it is. */
export type ClientAuthMethod = 'secret' | 'certificate';

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
  c: Pick<
    StoredClient,
    'id' | 'name' | 'secretHash' | 'certSpkiSha256' | 'grants' | 'createdAt' | 'updatedAt'
  >,
): ClientSummary {
  const grants = (sealedGrants(c.grants) ?? {}) as Record<string, Grant[]>;
  const auth: ClientAuthMethod[] = [];
  if (c.secretHash !== null) auth.push('secret');
  if (c.certSpkiSha256 !== null) auth.push('certificate');
  return {
    id: c.id,
    name: c.name,
    auth,
    certSpkiSha256: c.certSpkiSha256,
    grants,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  };
}

/**
 * The base64url SHA-256 of a certificate's SubjectPublicKeyInfo (DER): what a client is bound to,
 * and what the listener computes from the certificate a client presents. The public key rather
 * than the whole certificate, so a certificate renewed over the same key stays bound.
 */
export function certificateSpkiSha256(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64url');
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
  checkClientName(name);
  const normalised = normaliseGrants(ctx, grants);
  await refuseTakenName(clients(ctx), name);
  const id = randomUUID();
  const secret = newSecret(id);
  const record = await insertClient(ctx, actor, {
    id,
    name,
    secretHash: await hashSecret(secret),
    certSpkiSha256: null,
    grants: normalised,
  });
  return { client: summary(record), secret };
}

/**
 * Creates an API client bound to a client certificate (mutual TLS, `clients add --cert`) and no
 * secret: it authenticates by presenting a certificate, issued by a CA in server.tls.clientCaFile,
 * whose public key is this one. The binding is sealed by the audit key with the rest of the row.
 * Refused: text that is not one PEM certificate, a CA certificate, one expired now, a certificate
 * whose key is already bound to another client (one key names one client).
 */
export async function addCertificateClient(
  ctx: LifecycleContext,
  name: string,
  grants: Record<string, readonly string[]>,
  certificatePem: string,
  actor: string,
): Promise<ClientSummary> {
  checkClientName(name);
  const normalised = normaliseGrants(ctx, grants);
  const cert = parseClientCertificate(certificatePem, ctx.clock.now());
  const certSpkiSha256 = certificateSpkiSha256(cert);
  const repo = clients(ctx);
  await refuseTakenName(repo, name);
  await refuseBoundCertificate(repo, certSpkiSha256);
  const record = await insertClient(
    ctx,
    actor,
    { id: randomUUID(), name, secretHash: null, certSpkiSha256, grants: normalised },
    { subject: oneLine(cert.subject), issuer: oneLine(cert.issuer), validTo: new Date(cert.validTo) },
  );
  return summary(record);
}

function checkClientName(name: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      'a client name is 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit',
    );
  }
}

async function refuseTakenName(repo: ClientStore, name: string): Promise<void> {
  if (await repo.findByName(name))
    throw new KeywardenError('CLIENT_EXISTS', `client "${name}" already exists`);
}

async function refuseBoundCertificate(repo: ClientStore, certSpkiSha256: string): Promise<void> {
  const holder = await repo.findByCertificate(certSpkiSha256);
  if (holder) {
    throw new KeywardenError(
      'CLIENT_EXISTS',
      `the certificate's public key (SPKI SHA-256 ${certSpkiSha256}) is already bound to client "${holder.name}"`,
    );
  }
}

/** One PEM client certificate, not a CA's, valid now; REQUEST_INVALID otherwise. */
function parseClientCertificate(pem: string, now: Date): X509Certificate {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length !== 1) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      blocks.length === 0
        ? 'the --cert file holds no PEM certificate (-----BEGIN CERTIFICATE-----)'
        : `the --cert file holds ${blocks.length} certificates: give the client's certificate alone`,
    );
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(blocks[0]!);
  } catch (e) {
    throw new KeywardenError('REQUEST_INVALID', `the certificate does not parse: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (cert.ca) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      `${oneLine(cert.subject)} is a CA certificate; bind a client to its own (end-entity) certificate`,
    );
  }
  if (new Date(cert.validTo) <= now) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      `the certificate ${oneLine(cert.subject)} expired on ${new Date(cert.validTo).toISOString()}`,
    );
  }
  return cert;
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

/**
 * Seals a new client row with the audit key (in the HSM, before anything is written: without its
 * seal no daemon accepts it) and inserts it with its `client.created` record.
 */
async function insertClient(
  ctx: LifecycleContext,
  actor: string,
  facts: Omit<ClientRecord, 'createdAt' | 'updatedAt' | 'seal'>,
  certificate?: { subject: string; issuer: string; validTo: Date },
): Promise<ClientRecord> {
  const now = ctx.clock.now();
  const sealFacts = { ...facts, createdAt: now };
  const sealer = await sealingAuditKey(ctx, actor);
  const record: ClientRecord = { ...sealFacts, updatedAt: now, seal: await sealer.seal(sealFacts) };
  const repo = clients(ctx);
  try {
    await ctx.store.transaction(async (tx) => {
      await tx.clients.insert(record);
      await tx.audit.record({
        type: 'client.created',
        actor,
        data: {
          clientId: record.id,
          name: record.name,
          grants: record.grants,
          sealedBy: sealer.kid,
          ...(certificate
            ? {
                certSpkiSha256: record.certSpkiSha256,
                certSubject: certificate.subject,
                certIssuer: certificate.issuer,
                certValidTo: certificate.validTo.toISOString(),
              }
            : {}),
        },
      });
    });
  } catch (e) {
    // Two operators adding the same name (or certificate) at once: the unique index decides.
    await refuseTakenName(repo, record.name);
    if (record.certSpkiSha256 !== null) await refuseBoundCertificate(repo, record.certSpkiSha256);
    throw new KeywardenError('STORE_ERROR', `cannot add client: ${(e as Error).message}`, { cause: e });
  }
  return record;
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
  const oldHash = c.secretHash;
  if (oldHash === null) {
    throw new KeywardenError(
      'REQUEST_INVALID',
      `client "${c.name}" authenticates with its certificate and has no secret to rotate`,
    );
  }
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
    if (!(await tx.clients.updateSecret(c.id, oldHash, { secretHash, seal }, now))) {
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
  /** What it proved itself with on this request. */
  via: ClientAuthMethod;
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
  if (!c || c.secretHash === null || !(await verifySecret(secret, c.secretHash))) return null;
  return admitted(ctx, c, 'secret');
}

/**
 * The client bound to the certificate a TLS client presented (its SPKI SHA-256; the listener has
 * checked that a CA of server.tls.clientCaFile issued it and that it is valid now), or null when
 * no client is bound to it or its row is not vouched for by an HSM key (ClientTrust, as for a
 * secret). One indexed read, no scrypt: the key the client proved possession of in the handshake
 * is the credential.
 */
export async function checkClientCertificate(
  ctx: LifecycleContext,
  certSpkiSha256: string,
): Promise<AuthenticatedClient | null> {
  let c: ClientRecord | null;
  try {
    c = await clients(ctx).findByCertificate(certSpkiSha256);
  } catch (e) {
    throw new KeywardenError('STORE_ERROR', `cannot read API clients: ${(e as Error).message}`, { cause: e });
  }
  if (!c) return null;
  return admitted(ctx, c, 'certificate');
}

/** The authenticated client of a row whose credential matched, if an HSM key vouches for the row. */
async function admitted(
  ctx: LifecycleContext,
  c: ClientRecord,
  via: ClientAuthMethod,
): Promise<AuthenticatedClient | null> {
  let verdict: ClientVerdict;
  try {
    verdict = await ctx.clientTrust.admit(c);
  } catch (e) {
    throw new KeywardenError('STORE_ERROR', `cannot read the audit keys: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (!verdict.ok) return null;
  return { id: c.id, name: c.name, grants: c.grants, version: clientRowVersion(c), via };
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
