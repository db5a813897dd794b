import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';
import { testTlsMaterial } from './tls-cert';
import { VaultError, VaultState, type AttributePatch, type KeyVersionInfo } from './vault-state';

/** The Key Vault key operations this server speaks, as named in counters, faults and permissions. */
export const KEY_VAULT_OPS = [
  'create',
  'get',
  'list',
  'listVersions',
  'update',
  'delete',
  'getDeleted',
  'listDeleted',
  'purge',
  'sign',
] as const;
export type KeyVaultOp = (typeof KEY_VAULT_OPS)[number];

/** RBAC data action Key Vault names in its 403 for each operation. */
const DATA_ACTION: Record<KeyVaultOp, string> = {
  create: 'Microsoft.KeyVault/vaults/keys/create/action',
  get: 'Microsoft.KeyVault/vaults/keys/read',
  list: 'Microsoft.KeyVault/vaults/keys/read',
  listVersions: 'Microsoft.KeyVault/vaults/keys/read',
  update: 'Microsoft.KeyVault/vaults/keys/update/action',
  delete: 'Microsoft.KeyVault/vaults/keys/delete',
  getDeleted: 'Microsoft.KeyVault/vaults/keys/read',
  listDeleted: 'Microsoft.KeyVault/vaults/keys/read',
  purge: 'Microsoft.KeyVault/vaults/keys/purge/action',
  sign: 'Microsoft.KeyVault/vaults/keys/sign/action',
};

/**
 * An injected failure. Matches the next authenticated request for `op` (any op when absent),
 * `times` times (default 1; `Infinity` for "until cleared"). With neither `status` nor
 * `dropConnection` the request is only slowed down by `delayMs` and then answered normally.
 */
export interface Fault {
  op?: KeyVaultOp;
  /** HTTP status to answer with (429, 500, 503, ...). */
  status?: number;
  /** Sets `Retry-After` (seconds) on the fault response. */
  retryAfterSeconds?: number;
  times?: number;
  /** Perform the operation first, then answer with the fault: "the server did it but the client never heard". */
  afterCommit?: boolean;
  /** Destroy the socket instead of answering (a network failure). */
  dropConnection?: boolean;
  /** Wait this long before handling the request (a slow or hung vault). */
  delayMs?: number;
}

/** One request as the server saw it. */
export interface RequestRecord {
  method: string;
  path: string;
  /** The raw query string, exactly as sent (the SDK sends `api%2Dversion`). */
  rawQuery: string;
  /** Null for requests refused before routing (unauthenticated challenge round trips). */
  op: KeyVaultOp | null;
  status: number;
  /** Epoch milliseconds when the request arrived. */
  at: number;
  faulted: boolean;
  /** The bearer token the server accepted for this request; null when it was not authenticated. */
  token: string | null;
}

export interface KeyVaultServerOptions {
  /** Tenant named in the `WWW-Authenticate` challenge. */
  tenantId?: string;
  /** Clock used for nbf/exp enforcement and timestamps. */
  now?: () => Date;
  /**
   * Items per page of a list answer when the client asks for no smaller `maxresults` (default
   * 25, Key Vault's own maximum). Lower it to make every list span several pages.
   */
  pageSize?: number;
}

/** Key Vault's largest `maxresults`. */
const MAX_PAGE = 25;
const LIST_OPS: ReadonlySet<KeyVaultOp> = new Set(['list', 'listVersions', 'listDeleted']);

interface TokenGrant {
  permissions: ReadonlySet<KeyVaultOp>;
}

const BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * A local HTTPS server speaking the Azure Key Vault keys REST protocol, for driving the real
 * @azure/keyvault-keys SDK in tests. Private keys are made with node:crypto and never leave
 * this object. Bearer tokens are opaque strings issued by {@link issueToken}.
 */
export class KeyVaultTestServer {
  /** `https://127.0.0.1:<port>`: what the SDK takes as vaultUrl. */
  readonly vaultUrl: string;
  /** PEM of the CA that issued the server certificate. */
  readonly caPem: string;
  /** The same CA written to a file (removed by close()), for `tls.caFile`. */
  readonly caFile: string;
  readonly tenantId: string;
  /** Every request in arrival order. */
  readonly requests: RequestRecord[] = [];

  private readonly pageSize: number;
  private readonly tokens = new Map<string, TokenGrant>();
  private faults: Array<Fault & { remaining: number }> = [];

  /** @internal use startKeyVaultServer() */
  constructor(
    private readonly server: Server,
    private readonly state: VaultState,
    private readonly tmpDir: string,
    opts: { vaultUrl: string; caPem: string; caFile: string; tenantId: string; pageSize: number },
  ) {
    this.pageSize = opts.pageSize;
    this.vaultUrl = opts.vaultUrl;
    this.caPem = opts.caPem;
    this.caFile = opts.caFile;
    this.tenantId = opts.tenantId;
  }

  /** Issues a bearer token the server accepts, allowed every operation unless `permissions` narrows it. */
  issueToken(opts: { permissions?: readonly KeyVaultOp[] } = {}): string {
    const token = `kv-test-${randomBytes(18).toString('base64url')}`;
    this.tokens.set(token, { permissions: new Set(opts.permissions ?? KEY_VAULT_OPS) });
    return token;
  }

  /** A TokenCredential that always returns `token` (by default a fresh token with every permission). */
  credential(token: string = this.issueToken()): TokenCredential & { calls: TokenRequestRecord[] } {
    return staticTokenCredential(token);
  }

  inject(fault: Fault): void {
    this.faults.push({ ...fault, remaining: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Authenticated requests routed to `op` (faulted ones included). */
  count(op: KeyVaultOp): number {
    return this.requests.filter((r) => r.op === op).length;
  }

  resetCounts(): void {
    this.requests.length = 0;
  }

  /** Names of live keys. */
  keyNames(): string[] {
    return this.state.names();
  }

  /** Names of soft-deleted (recoverable) keys. */
  deletedKeyNames(): string[] {
    return this.state.deletedNames();
  }

  /** Versions of a live key, public facts only; undefined if no such key. */
  keyInfo(name: string): KeyVersionInfo[] | undefined {
    return this.state.info(name);
  }

  /** Changes a key version's attributes out of band (an operator in the portal). `version` '' = latest. */
  setAttributes(
    name: string,
    version: string,
    patch: { enabled?: boolean; notBefore?: Date | null; expiresOn?: Date | null },
  ): void {
    const p: AttributePatch = {};
    if (patch.enabled !== undefined) p.enabled = patch.enabled;
    if (patch.notBefore !== undefined)
      p.nbf = patch.notBefore === null ? null : Math.floor(patch.notBefore.getTime() / 1000);
    if (patch.expiresOn !== undefined)
      p.exp = patch.expiresOn === null ? null : Math.floor(patch.expiresOn.getTime() / 1000);
    this.state.setAttributes(name, version, p);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    await rm(this.tmpDir, { recursive: true, force: true });
  }

  /** @internal */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://vault.invalid');
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: url.pathname,
      rawQuery: url.search.replace(/^\?/, ''),
      op: null,
      status: 0,
      at: Date.now(),
      faulted: false,
      token: null,
    };
    this.requests.push(record);
    const send = (status: number, body?: unknown, headers: Record<string, string> = {}): void => {
      record.status = status;
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, {
        ...(body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' }),
        'x-ms-keyvault-service-version': 'keywarden-test',
        ...headers,
      });
      res.end(text);
    };
    try {
      const grant = this.authenticate(req);
      if (!grant) {
        const hasToken = /^Bearer\s+\S+/i.test(req.headers.authorization ?? '');
        await drain(req);
        send(
          401,
          {
            error: {
              code: 'Unauthorized',
              message: hasToken
                ? 'The bearer token presented is not valid for this vault.'
                : 'AKV10000: Request is missing a Bearer or PoP token.',
            },
          },
          {
            'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${this.tenantId}", resource="https://vault.azure.net"`,
          },
        );
        return;
      }
      record.token = bearerOf(req) ?? null;
      const route = routeOf(req.method ?? 'GET', url.pathname);
      if (!route) {
        await drain(req);
        throw new VaultError(400, 'BadParameter', `Unsupported operation ${req.method} ${url.pathname}.`);
      }
      record.op = route.op;
      if (!url.searchParams.get('api-version')) {
        await drain(req);
        throw new VaultError(400, 'BadParameter', 'The api-version query parameter is required.');
      }
      if (!grant.permissions.has(route.op)) {
        await drain(req);
        throw new VaultError(
          403,
          'Forbidden',
          `Caller is not authorized to perform action on resource.\r\nAction: '${DATA_ACTION[route.op]}'\r\nResource: '${url.pathname}'`,
          'ForbiddenByRbac',
        );
      }
      const body = await readJson(req);
      const paging = LIST_OPS.has(route.op) ? this.pagingOf(url) : null;
      const fault = this.takeFault(route.op);
      if (fault?.delayMs !== undefined) await sleep(fault.delayMs);
      const failing = fault !== undefined && (fault.status !== undefined || fault.dropConnection === true);
      if (failing && !fault.afterCommit) {
        record.faulted = true;
        this.answerFault(fault, res, send);
        return;
      }
      const executed = await this.execute(route, body);
      const result = paging ? this.page(executed as { value: unknown[] }, paging, url) : executed;
      if (failing) {
        record.faulted = true;
        this.answerFault(fault, res, send);
        return;
      }
      if (result === undefined) send(204);
      else send(200, result);
    } catch (e) {
      if (e instanceof VaultError) send(e.status, e.toBody());
      else send(500, { error: { code: 'InternalServerError', message: String(e) } });
    }
  }

  private authenticate(req: IncomingMessage): TokenGrant | undefined {
    const token = bearerOf(req);
    return token === undefined ? undefined : this.tokens.get(token);
  }

  private takeFault(op: KeyVaultOp): Fault | undefined {
    const f = this.faults.find((x) => x.remaining > 0 && (x.op === undefined || x.op === op));
    if (!f) return undefined;
    f.remaining -= 1;
    this.faults = this.faults.filter((x) => x.remaining > 0);
    return f;
  }

  private answerFault(
    fault: Fault,
    res: ServerResponse,
    send: (status: number, body?: unknown, headers?: Record<string, string>) => void,
  ): void {
    if (fault.dropConnection) {
      res.socket?.destroy();
      return;
    }
    const status = fault.status ?? 500;
    const code =
      status === 429
        ? 'Throttled'
        : status === 503
          ? 'ServiceUnavailable'
          : status >= 500
            ? 'InternalServerError'
            : 'Fault';
    const message =
      status === 429
        ? 'Request was not allowed because the request rate exceeded the vault limits (injected fault).'
        : `Injected fault: HTTP ${status}.`;
    send(
      status,
      { error: { code, message } },
      fault.retryAfterSeconds === undefined ? {} : { 'retry-after': String(fault.retryAfterSeconds) },
    );
  }

  /** `maxresults` and `$skiptoken` of a list request, checked as Key Vault checks them. */
  private pagingOf(url: URL): { size: number; offset: number } {
    const max = url.searchParams.get('maxresults');
    let size = this.pageSize;
    if (max !== null) {
      const n = Number(max);
      if (!/^\d+$/.test(max) || n < 1 || n > MAX_PAGE)
        throw new VaultError(400, 'BadParameter', `Invalid maxresults: ${max} (1 to ${MAX_PAGE}).`);
      size = Math.min(size, n);
    }
    const token = url.searchParams.get('$skiptoken');
    let offset = 0;
    if (token !== null) {
      const decoded = /^o(\d{1,9})$/.exec(Buffer.from(token, 'base64url').toString('latin1'));
      if (!decoded) throw new VaultError(400, 'BadParameter', 'Invalid $skiptoken.');
      offset = Number(decoded[1]);
    }
    return { size, offset };
  }

  /**
   * One page of a list answer; `nextLink` is absolute and repeats the query (as Key Vault's does),
   * with an opaque `$skiptoken` the SDK follows unchanged.
   */
  private page(list: { value: unknown[] }, p: { size: number; offset: number }, url: URL): unknown {
    const end = p.offset + p.size;
    if (end >= list.value.length) return { value: list.value.slice(p.offset), nextLink: null };
    const next = new URL(url.pathname, this.vaultUrl);
    next.searchParams.set('api-version', url.searchParams.get('api-version') ?? '');
    next.searchParams.set('$skiptoken', Buffer.from(`o${end}`, 'latin1').toString('base64url'));
    if (url.searchParams.has('maxresults')) next.searchParams.set('maxresults', String(p.size));
    return { value: list.value.slice(p.offset, end), nextLink: next.toString() };
  }

  private async execute(route: Route, body: Record<string, unknown>): Promise<unknown> {
    const { op, name = '', version = '' } = route;
    switch (op) {
      case 'create':
        return this.state.create(name, body);
      case 'get':
        return this.state.get(name, version);
      case 'list':
        return this.state.list();
      case 'listVersions':
        return this.state.listVersions(name);
      case 'update':
        return this.state.update(name, version, body);
      case 'delete':
        return this.state.delete(name);
      case 'getDeleted':
        return this.state.getDeleted(name);
      case 'listDeleted':
        return this.state.listDeleted();
      case 'purge':
        this.state.purge(name);
        return undefined;
      case 'sign':
        return this.state.sign(name, version, body);
    }
  }
}

interface Route {
  op: KeyVaultOp;
  name?: string;
  version?: string;
}

function routeOf(method: string, pathname: string): Route | undefined {
  // Paths keep an empty last segment for "latest version" (`/keys/name/`), as the SDK sends it.
  const parts = pathname.split('/').slice(1).map(decodeURIComponent);
  const [root, name, third, fourth] = parts;
  if (root === 'keys') {
    if (name === undefined || name === '')
      return method === 'GET' && parts.length === 1 ? { op: 'list' } : undefined;
    if (parts.length === 3 && third === 'create' && method === 'POST') return { op: 'create', name };
    if (parts.length === 3 && third === 'versions' && method === 'GET') return { op: 'listVersions', name };
    if (parts.length === 4 && fourth === 'sign' && method === 'POST')
      return { op: 'sign', name, version: third ?? '' };
    if (parts.length <= 3) {
      const version = third ?? '';
      if (method === 'GET') return { op: 'get', name, version };
      if (method === 'PATCH') return { op: 'update', name, version };
      if (method === 'DELETE' && version === '') return { op: 'delete', name };
    }
    return undefined;
  }
  if (root === 'deletedkeys') {
    if (name === undefined || name === '') return method === 'GET' ? { op: 'listDeleted' } : undefined;
    if (parts.length === 2 && method === 'GET') return { op: 'getDeleted', name };
    if (parts.length === 2 && method === 'DELETE') return { op: 'purge', name };
  }
  return undefined;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT_BYTES) throw new VaultError(413, 'RequestTooLarge', 'Request body too large.');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new VaultError(400, 'BadParameter', 'The request body is not a valid JSON object.');
  }
}

function bearerOf(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req) {
    // discard
  }
}

/** What a test credential was asked for: the scopes and tenant the SDK derived from the challenge. */
export interface TokenRequestRecord {
  scopes: string[];
  tenantId?: string;
}

/** A TokenCredential that hands out one fixed bearer token and records every getToken call. */
export function staticTokenCredential(token: string): TokenCredential & { calls: TokenRequestRecord[] } {
  const calls: TokenRequestRecord[] = [];
  return {
    calls,
    async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> {
      calls.push({
        scopes: typeof scopes === 'string' ? [scopes] : [...scopes],
        ...(options?.tenantId === undefined ? {} : { tenantId: options.tenantId }),
      });
      return { token, expiresOnTimestamp: Date.now() + 3600_000 };
    },
  };
}

/** Starts a server on 127.0.0.1 with an ephemeral port and a certificate from a throw-away test CA. */
export async function startKeyVaultServer(opts: KeyVaultServerOptions = {}): Promise<KeyVaultTestServer> {
  const pageSize = opts.pageSize ?? MAX_PAGE;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE)
    throw new Error(`pageSize must be a whole number from 1 to ${MAX_PAGE}`);
  const tls = await testTlsMaterial();
  const tmpDir = await mkdtemp(join(tmpdir(), 'kw-kv-server-'));
  const caFile = join(tmpDir, 'test-ca.pem');
  await writeFile(caFile, tls.caPem);
  const server = createServer({ cert: tls.certPem, key: tls.keyPem });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const vaultUrl = `https://127.0.0.1:${port}`;
  const now = opts.now ?? (() => new Date());
  const kv = new KeyVaultTestServer(server, new VaultState(vaultUrl, now), tmpDir, {
    vaultUrl,
    caPem: tls.caPem,
    caFile,
    tenantId: opts.tenantId ?? '72f988bf-0000-4000-8000-00000000cafe',
    pageSize,
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => void kv.handle(req, res));
  return kv;
}
