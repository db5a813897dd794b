import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeyVaultOp, KeyVaultTestServer } from './server';

/**
 * The App Service managed-identity protocol (api-version 2019-08-01), as @azure/msal-node's
 * AppService source speaks it: `GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<r>`
 * with the header `X-IDENTITY-HEADER: <IDENTITY_HEADER>`, answered with
 * `{access_token, expires_on (epoch seconds, a string), resource, token_type, client_id}`.
 */
export const APP_SERVICE_MSI_API_VERSION = '2019-08-01';
/** The resource Key Vault names in its auth challenge (and so what the SDK asks a token for). */
export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';

/** One token request as the endpoint saw it. */
export interface ManagedIdentityRequest {
  /** Epoch milliseconds. */
  at: number;
  method: string;
  apiVersion: string | null;
  resource: string | null;
  /** `client_id` / `object_id` / `mi_res_id` when a user-assigned identity was asked for. */
  userAssignedId: string | null;
  /** True when X-IDENTITY-HEADER carried the right secret. */
  headerOk: boolean;
  status: number;
  /** The vault bearer token handed out; null when the request was refused. */
  token: string | null;
}

export interface ManagedIdentityEndpointOptions {
  /** Permissions of the vault tokens it hands out (default: every operation). */
  permissions?: readonly KeyVaultOp[];
  /** Lifetime the token response announces (default 3600 s). */
  expiresInSeconds?: number;
}

/**
 * A loopback stand-in for Azure App Service's local token service, handing out bearer tokens of
 * a {@link KeyVaultTestServer}. A process given {@link env} and `credential: managed-identity`
 * gets its vault tokens through the real @azure/identity → MSAL App Service code path.
 *
 * It also serves an IMDS tripwire: `env()` points AZURE_POD_IDENTITY_AUTHORITY_HOST (the
 * override both @azure/identity and MSAL honour for IMDS) here, so a process that fell back to
 * IMDS would show up in {@link imdsRequests} instead of reaching for 169.254.169.254.
 */
export class ManagedIdentityEndpoint {
  /** The IDENTITY_ENDPOINT value: `http://127.0.0.1:<port>/msi/token`. */
  readonly identityEndpoint: string;
  /** The IDENTITY_HEADER secret the endpoint requires. */
  readonly identityHeader: string;
  /** The AZURE_POD_IDENTITY_AUTHORITY_HOST value (the IMDS tripwire). */
  readonly imdsHost: string;
  /** Every request to the token path, in arrival order. */
  readonly requests: ManagedIdentityRequest[] = [];
  /** Every request that reached the IMDS tripwire (should stay empty). */
  readonly imdsRequests: { at: number; url: string }[] = [];

  /** @internal use startManagedIdentityEndpoint() */
  constructor(
    private readonly server: Server,
    private readonly vault: KeyVaultTestServer,
    private readonly opts: ManagedIdentityEndpointOptions,
    base: string,
  ) {
    this.identityEndpoint = `${base}/msi/token`;
    this.identityHeader = `kw-msi-${randomBytes(18).toString('base64url')}`;
    this.imdsHost = `${base}/imds-tripwire`;
  }

  /**
   * The App Service managed-identity environment for a child process. The two sources that
   * would win over App Service are switched off (undefined removes a variable from a spawned
   * env): AKS token exchange (AZURE_FEDERATED_TOKEN_FILE, checked by @azure/identity first) and
   * Service Fabric (IDENTITY_SERVER_THUMBPRINT, checked by MSAL first).
   */
  env(): NodeJS.ProcessEnv {
    return {
      IDENTITY_ENDPOINT: this.identityEndpoint,
      IDENTITY_HEADER: this.identityHeader,
      AZURE_POD_IDENTITY_AUTHORITY_HOST: this.imdsHost,
      IDENTITY_SERVER_THUMBPRINT: undefined,
      AZURE_FEDERATED_TOKEN_FILE: undefined,
    };
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  /** @internal */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://msi.invalid');
    const send = (status: number, body: unknown): number => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body));
      return status;
    };
    req.resume();
    if (url.pathname.startsWith('/imds-tripwire')) {
      this.imdsRequests.push({ at: Date.now(), url: url.pathname + url.search });
      send(500, { error: 'imds_tripwire', error_description: 'IMDS must not be used in this test' });
      return;
    }
    if (url.pathname !== '/msi/token') {
      send(404, { error: 'not_found', error_description: `no route ${url.pathname}` });
      return;
    }
    const q = url.searchParams;
    const record: ManagedIdentityRequest = {
      at: Date.now(),
      method: req.method ?? 'GET',
      apiVersion: q.get('api-version'),
      resource: q.get('resource'),
      userAssignedId: q.get('client_id') ?? q.get('object_id') ?? q.get('mi_res_id'),
      headerOk: req.headers['x-identity-header'] === this.identityHeader,
      status: 0,
      token: null,
    };
    this.requests.push(record);
    record.status = this.answer(record, send);
  }

  /** Every vault token this endpoint handed out. */
  issuedTokens(): Set<string> {
    return new Set(this.requests.flatMap((r) => (r.token === null ? [] : [r.token])));
  }

  private answer(r: ManagedIdentityRequest, send: (status: number, body: unknown) => number): number {
    // App Service refuses a request without the right secret header before anything else.
    if (!r.headerOk) {
      return send(401, { error: 'unauthorized', error_description: 'X-IDENTITY-HEADER missing or wrong' });
    }
    if (r.method !== 'GET') return send(405, { error: 'invalid_request', error_description: 'GET only' });
    if (r.apiVersion !== APP_SERVICE_MSI_API_VERSION) {
      return send(400, {
        error: 'invalid_request',
        error_description: `api-version must be ${APP_SERVICE_MSI_API_VERSION}, got ${String(r.apiVersion)}`,
      });
    }
    if (r.resource !== KEY_VAULT_RESOURCE) {
      return send(400, {
        error: 'invalid_resource',
        error_description: `this identity only gets tokens for ${KEY_VAULT_RESOURCE}, asked for ${String(r.resource)}`,
      });
    }
    const expiresIn = this.opts.expiresInSeconds ?? 3600;
    r.token = this.vault.issueToken(
      this.opts.permissions === undefined ? {} : { permissions: this.opts.permissions },
    );
    return send(200, {
      access_token: r.token,
      expires_on: String(Math.floor(Date.now() / 1000) + expiresIn),
      resource: r.resource,
      token_type: 'Bearer',
      client_id: '00000000-0000-4000-8000-00000000a11d',
    });
  }
}

/**
 * Starts a loopback App Service managed-identity endpoint (plain http on 127.0.0.1, as App
 * Service's own is local) that issues tokens for `vault`. Close it in an after hook.
 */
export async function startManagedIdentityEndpoint(
  vault: KeyVaultTestServer,
  opts: ManagedIdentityEndpointOptions = {},
): Promise<ManagedIdentityEndpoint> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = new ManagedIdentityEndpoint(server, vault, opts, `http://127.0.0.1:${port}`);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => endpoint.handle(req, res));
  return endpoint;
}
