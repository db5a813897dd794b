/**
 * One real `keywarden serve` process with two scopes on two backends: `onprem` on a SoftHSM2
 * token (PKCS#11) and `cloud` on Azure Key Vault, played by the local Key Vault protocol server
 * over HTTPS (trusted through `caFile`, never by switching verification off). The daemon and
 * the CLI are separate processes with `credential: managed-identity`: they get their Entra ID
 * tokens through the real @azure/identity → MSAL App Service managed-identity code path, from a
 * loopback IDENTITY_ENDPOINT this test serves. IMDS (169.254.169.254) is never contacted: its
 * override (AZURE_POD_IDENTITY_AUTHORITY_HOST) points at a loopback tripwire that must stay
 * silent.
 *
 * Asserted: two separate JWKS, each holding only its own scope's key and `iss`; the Azure key is
 * in the vault with keywarden's tags; tokens signed over HTTP in each scope verify against their
 * own scope's remote JWKS and fail against the other's; a throttled rotation fails with
 * BACKEND_THROTTLED and leaves no key row and no vault key behind; a vault 5xx on sign is a 503
 * with a JSON error code while the daemon stays up and the other scope keeps signing; /readyz
 * reports the vault down and back.
 */
import { strict as assert } from 'node:assert';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { DEFAULT_RETRY_SETTINGS, TAG_KEY_ID, TAG_SCOPE } from '../../src/backends/azure-keyvault';
import { EXIT_CODE } from '../../src/cli/exit-codes';
import { startDaemon, type Daemon } from '../helpers/daemon';
import {
  APP_SERVICE_MSI_API_VERSION,
  KEY_VAULT_RESOURCE,
  startKeyVaultServer,
  startManagedIdentityEndpoint,
  type KeyVaultTestServer,
  type ManagedIdentityEndpoint,
} from '../helpers/keyvault-server';

const ONPREM = 'onprem';
const CLOUD = 'cloud';
const AZURE_BACKEND = 'akv';
const KEY_PREFIX = 'kwe2e';
/** Nothing scheduled fires during the test: only start-up reconcile and what the test does. */
const QUIET_SCHEDULE = '0 0 1 1 *';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** A key row as `keywarden --json keys list` prints it (the fields this test reads). */
interface KeyRow {
  kid: string | null;
  scope: string;
  state: string;
  backend: string;
  backendRef: Record<string, string>;
}

const errorOf = (a: Answer) => (a.body.error ?? {}) as { code?: string; message?: string };

describe('Azure Key Vault + PKCS#11 scopes in one daemon (e2e: keywarden serve + CLI)', function () {
  this.timeout(120_000);
  let kv: KeyVaultTestServer;
  let mi: ManagedIdentityEndpoint;
  let daemon: Daemon;
  let secret: string;
  /** `keys list` right after start-up (nothing changes it until the rotation test). */
  let rowsAtStart: KeyRow[];

  async function call(path: string, opts: { body?: unknown; method?: string } = {}): Promise<Answer> {
    const r = await fetch(`${daemon.baseUrl}${path}`, {
      method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
      headers:
        opts.body === undefined
          ? {}
          : { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
    });
    const text = await r.text();
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = { text };
    }
    return { status: r.status, body };
  }

  const sign = (scope: string, sub: string) =>
    call(`/v1/scopes/${scope}/sign`, { body: { claims: { sub, aud: `${scope}-api` }, ttlSeconds: 120 } });

  async function signed(scope: string, sub: string): Promise<string> {
    const r = await sign(scope, sub);
    assert.equal(r.status, 200, `sign in ${scope}: ${JSON.stringify(r.body)}\n${daemon.output()}`);
    return r.body.token as string;
  }

  const jwks = (scope: string): JWTVerifyGetKey =>
    createRemoteJWKSet(new URL(daemon.jwksUrl(scope)), { cacheMaxAge: 0, cooldownDuration: 0 });

  /** Every key row, from the real CLI (one process start: they are slow on a shared 2-core box). */
  async function keyRows(): Promise<KeyRow[]> {
    const r = await daemon.cli(['--json', 'keys', 'list']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as KeyRow[];
  }

  async function publishedJwks(scope: string): Promise<{ keys: Record<string, unknown>[] }> {
    const r = await fetch(daemon.jwksUrl(scope));
    assert.equal(r.status, 200);
    return (await r.json()) as { keys: Record<string, unknown>[] };
  }

  /** This test's keys in the vault (the local server holds nothing else). */
  const vaultKeys = () => kv.keyNames().filter((n) => n.startsWith(`${KEY_PREFIX}-`));

  before(async () => {
    kv = await startKeyVaultServer();
    mi = await startManagedIdentityEndpoint(kv);
    daemon = await startDaemon({
      scopes: [
        { name: ONPREM, schedule: QUIET_SCHEDULE },
        { name: CLOUD, schedule: QUIET_SCHEDULE, backend: AZURE_BACKEND },
      ],
      backends: {
        [AZURE_BACKEND]: {
          type: 'azure',
          vaultUrl: kv.vaultUrl,
          keyPrefix: KEY_PREFIX,
          keyProtection: 'hsm',
          credential: { type: 'managed-identity' },
          caFile: kv.caFile,
          disableChallengeResourceVerification: true,
        },
      },
      env: mi.env(),
      logLevel: 'warn',
    });
    const add = await daemon.cli([
      '--json',
      'clients',
      'add',
      'issuer-svc',
      '--scope',
      ONPREM,
      '--scope',
      CLOUD,
      '--grant',
      'sign,verify',
    ]);
    assert.equal(add.code, 0, add.stderr);
    secret = (JSON.parse(add.stdout) as { secret: string }).secret;
  });

  afterEach(() => kv?.clearFaults());

  after(async () => {
    await daemon?.stop();
    await mi?.close();
    await kv?.close();
  });

  it('publishes one JWKS per scope, each with only its own key and iss; the Azure key is in the vault, tagged', async () => {
    const onprem = await publishedJwks(ONPREM);
    const cloud = await publishedJwks(CLOUD);
    assert.equal(onprem.keys.length, 1, JSON.stringify(onprem));
    assert.equal(cloud.keys.length, 1, JSON.stringify(cloud));
    const [onpremJwk] = onprem.keys;
    const [cloudJwk] = cloud.keys;
    assert.equal(onpremJwk?.iss, daemon.issuer(ONPREM));
    assert.equal(cloudJwk?.iss, daemon.issuer(CLOUD));
    assert.notEqual(daemon.issuer(ONPREM), daemon.issuer(CLOUD));
    assert.notEqual(onpremJwk?.kid, cloudJwk?.kid);
    assert.equal(cloudJwk?.kty, 'EC');
    assert.equal(cloudJwk?.crv, 'P-256');
    assert.equal(cloudJwk?.d, undefined, 'no private part');

    rowsAtStart = await keyRows();
    const [onpremRow, ...moreOnprem] = rowsAtStart.filter((k) => k.scope === ONPREM);
    const [cloudRow, ...moreCloud] = rowsAtStart.filter((k) => k.scope === CLOUD);
    // Two scope keys; the audit key (made when the client was sealed, in the `_audit` lifecycle) aside.
    assert.equal(rowsAtStart.filter((k) => k.scope !== '_audit').length, 2);
    assert.deepEqual([moreOnprem, moreCloud], [[], []]);
    assert.equal(onpremRow?.backend, 'hsm');
    assert.equal(onpremRow?.kid, onpremJwk?.kid);
    assert.equal(cloudRow?.backend, AZURE_BACKEND);
    assert.equal(cloudRow?.kid, cloudJwk?.kid);
    assert.equal(cloudRow?.backendRef.vaultUrl, kv.vaultUrl);

    // Only the Azure scope's key is in the vault, under the recorded name, HSM-protected and tagged.
    const name = cloudRow?.backendRef.name ?? '';
    assert.deepEqual(vaultKeys(), [name]);
    const [version, ...otherVersions] = kv.keyInfo(name) ?? [];
    assert.ok(version, `vault key ${name}`);
    assert.deepEqual(otherVersions, []);
    assert.equal(version.version, cloudRow?.backendRef.version);
    assert.equal(version.kty, 'EC-HSM');
    assert.equal(version.exportable, false);
    assert.deepEqual(version.keyOps, ['sign']);
    assert.equal(version.tags[TAG_SCOPE], CLOUD);
    const keyId = version.tags[TAG_KEY_ID] ?? '';
    assert.match(keyId, /^[0-9a-f-]{36}$/);
    assert.equal(name, `${KEY_PREFIX}-${CLOUD}-${keyId}`);
  });

  it('signs in each scope (the daemon with its own managed-identity token); each token verifies only against its own scope', async () => {
    const signsBefore = kv.count('sign');
    const onpremToken = await signed(ONPREM, 'alice');
    assert.equal(kv.count('sign'), signsBefore, 'the PKCS#11 scope never calls the vault');
    const cloudToken = await signed(CLOUD, 'bob');
    assert.equal(kv.count('sign'), signsBefore + 1, 'the Azure scope signs in the vault');

    // The vault only accepts tokens it minted, and only the managed-identity endpoint asks it to
    // mint any: the daemon's sign carried a token the endpoint handed out, and not the one the
    // `init` process used to create the key (each process got its own through IDENTITY_ENDPOINT).
    const issued = mi.issuedTokens();
    const daemonSign = kv.requests.filter((r) => r.op === 'sign').at(-1);
    const initCreate = kv.requests.find((r) => r.op === 'create');
    assert.ok(
      daemonSign?.token && issued.has(daemonSign.token),
      'daemon signed with a managed-identity token',
    );
    assert.ok(
      initCreate?.token && issued.has(initCreate.token),
      'init created with a managed-identity token',
    );
    assert.notEqual(daemonSign.token, initCreate.token);
    for (const r of kv.requests.filter((x) => x.op !== null)) {
      assert.ok(
        r.token !== null && issued.has(r.token),
        `${r.method} ${r.path}: token not from the endpoint`,
      );
    }
    // ... asked for with the App Service protocol, and IMDS was never tried.
    for (const r of mi.requests) {
      assert.deepEqual(
        {
          method: r.method,
          apiVersion: r.apiVersion,
          resource: r.resource,
          headerOk: r.headerOk,
          status: r.status,
        },
        {
          method: 'GET',
          apiVersion: APP_SERVICE_MSI_API_VERSION,
          resource: KEY_VAULT_RESOURCE,
          headerOk: true,
          status: 200,
        },
      );
    }
    assert.deepEqual(mi.imdsRequests, []);

    const own = {
      [ONPREM]: { token: onpremToken, sub: 'alice' },
      [CLOUD]: { token: cloudToken, sub: 'bob' },
    };
    for (const [scope, other] of [
      [ONPREM, CLOUD],
      [CLOUD, ONPREM],
    ] as const) {
      const { token, sub } = own[scope];
      const ok = await jwtVerify(token, jwks(scope), {
        issuer: daemon.issuer(scope),
        audience: `${scope}-api`,
        algorithms: ['ES256'],
      });
      assert.equal(ok.payload.sub, sub);
      assert.equal(ok.protectedHeader.kid, (await publishedJwks(scope)).keys[0]?.kid);
      // Cross-scope: the other scope's JWKS has no key for this kid, whatever the claims say.
      await assert.rejects(
        jwtVerify(token, jwks(other), { algorithms: ['ES256'] }),
        (e: Error & { code?: string }) => e.code === 'ERR_JWKS_NO_MATCHING_KEY',
        `a ${scope} token must not verify against ${other}'s JWKS`,
      );
    }
    assert.notEqual(decodeProtectedHeader(onpremToken).kid, decodeProtectedHeader(cloudToken).kid);
  });

  it('a throttled rotation fails with BACKEND_THROTTLED and leaves no key row and no vault key', async () => {
    const rowsBefore = rowsAtStart;
    const vaultBefore = vaultKeys();
    const jwksBefore = await publishedJwks(CLOUD);
    kv.inject({ op: 'create', status: 429, retryAfterSeconds: 1, times: Infinity });
    kv.resetCounts();

    const r = await daemon.cli(['keys', 'rotate', '--scope', CLOUD]);
    assert.equal(r.code, EXIT_CODE.BACKEND_THROTTLED, `exit code; stderr: ${r.stderr}`);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /^keywarden: BACKEND_THROTTLED: Azure Key Vault 127\.0\.0\.1:\d+: create ES256 key /m,
    );
    assert.match(r.stderr, /throttled \(HTTP 429/);
    assert.match(r.stderr, /gave up after 3 retries; the vault asked to wait 1 s/);
    assert.equal(r.stdout, '');
    // A 429 means the vault did nothing, so it is retried (Retry-After honoured), then given up.
    assert.equal(kv.count('create'), DEFAULT_RETRY_SETTINGS.maxRetries + 1);

    kv.clearFaults();
    const rowsAfter = await keyRows();
    assert.deepEqual(
      rowsAfter.map((k) => [k.kid, k.state]),
      rowsBefore.map((k) => [k.kid, k.state]),
      'no extra (or generating) key row',
    );
    assert.deepEqual(vaultKeys(), vaultBefore, 'no extra key in the vault');
    assert.deepEqual(kv.deletedKeyNames(), [], 'nothing was created, so nothing was deleted either');
    assert.deepEqual(await publishedJwks(CLOUD), jwksBefore);
    // The scope still signs with its existing key.
    await signed(CLOUD, 'after-throttle');
  });

  it('a vault 5xx on sign is a 503 with BACKEND_UNAVAILABLE; the daemon stays up and recovers', async () => {
    const signsBefore = kv.count('sign');
    kv.inject({ op: 'sign', status: 500, times: Infinity });
    const failed = await sign(CLOUD, 'carol');
    assert.equal(failed.status, 503, JSON.stringify(failed.body));
    assert.equal(errorOf(failed).code, 'BACKEND_UNAVAILABLE');
    assert.match(errorOf(failed).message ?? '', /vault error \(HTTP 500/);
    assert.equal(failed.body.token, undefined);
    assert.equal(
      kv.count('sign') - signsBefore,
      DEFAULT_RETRY_SETTINGS.maxRetries + 1,
      'sign is idempotent, so a 5xx is retried before giving up',
    );

    assert.equal((await call('/healthz')).status, 200);
    // The PKCS#11 scope is untouched by the vault's trouble.
    await signed(ONPREM, 'dave');

    kv.clearFaults();
    const token = await signed(CLOUD, 'carol');
    const ok = await jwtVerify(token, jwks(CLOUD), {
      issuer: daemon.issuer(CLOUD),
      audience: `${CLOUD}-api`,
    });
    assert.equal(ok.payload.sub, 'carol');
  });

  it('/readyz reports the Azure backend not ready while the vault is down, ready again after', async () => {
    type Ready = { status: string; checks: Record<string, { ok: boolean; detail: string }> };
    const azureCheck = `backend:${AZURE_BACKEND}`;
    const up = await call('/readyz');
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal((up.body as unknown as Ready).checks[azureCheck]?.ok, true);

    // The vault stops answering: every listing (the health probe) loses its connection.
    kv.inject({ op: 'list', dropConnection: true, times: Infinity });
    const down = await call('/readyz');
    const d = down.body as unknown as Ready;
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.equal(d.status, 'not-ready');
    assert.equal(d.checks[azureCheck]?.ok, false);
    assert.match(d.checks[azureCheck]?.detail ?? '', /^BACKEND_UNAVAILABLE: .*vault unreachable/);
    assert.equal(d.checks['backend:hsm']?.ok, true, 'the PKCS#11 backend stays ready');
    assert.equal(d.checks.store?.ok, true);
    assert.equal((await call('/healthz')).status, 200, 'liveness is not readiness');

    kv.clearFaults();
    const back = await call('/readyz');
    assert.equal(back.status, 200, JSON.stringify(back.body));
    assert.equal((back.body as unknown as Ready).checks[azureCheck]?.ok, true);
  });

  it('the managed-identity endpoint refuses a request without the right X-IDENTITY-HEADER', async () => {
    const url = `${mi.identityEndpoint}?api-version=${APP_SERVICE_MSI_API_VERSION}&resource=${encodeURIComponent(KEY_VAULT_RESOURCE)}`;
    const wrong = await fetch(url, { headers: { 'x-identity-header': 'not-the-secret' } });
    assert.equal(wrong.status, 401);
    const missing = await fetch(url);
    assert.equal(missing.status, 401);
    const right = await fetch(url, { headers: { 'x-identity-header': mi.identityHeader } });
    assert.equal(right.status, 200);
    const body = (await right.json()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), [
      'access_token',
      'client_id',
      'expires_on',
      'resource',
      'token_type',
    ]);
    // Every token the daemon and CLI got came with the right header.
    assert.ok(mi.requests.filter((r) => r.headerOk && r.status === 200).length >= 3);
    assert.deepEqual(mi.imdsRequests, []);
  });
});
