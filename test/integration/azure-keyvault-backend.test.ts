import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { KeyClient } from '@azure/keyvault-keys';
import { calculateJwkThumbprint, importJWK, jwtVerify, type JWK } from 'jose';
import {
  isValidKeyName,
  keyName,
  openAzureKeyVaultBackend,
  type AzureKeyVaultBackend,
  type AzureKeyVaultBackendOptions,
} from '../../src/backends/azure-keyvault';
import type { SigningAlg } from '../../src/policy/algorithms';
import { hasCode, KeywardenError, type ErrorCode } from '../../src/policy/errors';
import type { BackendRef, PublicJwk } from '../../src/policy/key';
import type { AzureBackendConfig } from '../../src/backends/azure-keyvault/config';
import {
  startKeyVaultServer,
  staticTokenCredential,
  type KeyVaultTestServer,
} from '../helpers/keyvault-server';

const HOUR = 3600_000;
const b64u = (v: string | Uint8Array): string => Buffer.from(v).toString('base64url');

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, what = ''): Promise<KeywardenError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(
    hasCode(caught, code),
    `${what}: expected ${code}, got ${String((caught as Error | undefined)?.stack ?? caught)}`,
  );
  return caught as KeywardenError;
}

describe('Azure Key Vault backend against the local Key Vault protocol server', function () {
  this.timeout(60_000);
  let server: KeyVaultTestServer;
  const opened: AzureKeyVaultBackend[] = [];
  const scope = 'integ';

  before(async () => {
    // Two items per page (Key Vault sends up to 25): every list in these tests spans pages.
    server = await startKeyVaultServer({ pageSize: 2 });
  });

  afterEach(() => server.clearFaults());

  after(async () => {
    for (const b of opened) await b.close();
    await server?.close();
  });

  function config(overrides: Partial<AzureBackendConfig> = {}): AzureBackendConfig {
    return {
      type: 'azure',
      name: 'azure-integ',
      vaultUrl: server.vaultUrl,
      keyPrefix: 'kwi',
      keyProtection: 'hsm',
      credential: { type: 'default' },
      purgeOnDestroy: true,
      caFile: server.caFile,
      disableChallengeResourceVerification: true,
      ...overrides,
    };
  }

  async function open(
    overrides: Partial<AzureBackendConfig> = {},
    opts: AzureKeyVaultBackendOptions = {},
  ): Promise<AzureKeyVaultBackend> {
    const b = await openAzureKeyVaultBackend(config(overrides), {
      credential: server.credential(),
      retry: { maxRetries: 3, baseDelayMs: 20, maxRetryAfterMs: 5_000, requestTimeoutMs: 30_000 },
      deletePollIntervalMs: 20,
      ...opts,
    });
    opened.push(b);
    return b;
  }

  async function generate(
    b: AzureKeyVaultBackend,
    alg: SigningAlg,
    window: { notBefore?: Date; notAfter?: Date } = {},
  ): Promise<{ ref: BackendRef; jwk: PublicJwk; keyId: string; name: string }> {
    const keyId = randomUUID();
    const planned = b.planKey({ scope, keyId });
    const now = Date.now();
    const g = await b.generate(planned, {
      alg,
      scope,
      keyId,
      notBefore: window.notBefore ?? new Date(now - 60_000),
      notAfter: window.notAfter ?? new Date(now + HOUR),
    });
    return { ref: g.ref, jwk: g.publicJwk, keyId, name: g.ref.ref['name'] ?? '' };
  }

  describe('keys it creates', () => {
    it('are HSM-protected, non-exportable, sign-only, tagged, with the request nbf/exp', async () => {
      const b = await open();
      const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
      const notAfter = new Date(notBefore.getTime() + 2 * HOUR);
      const ec = await generate(b, 'ES384', { notBefore, notAfter });
      const [v] = server.keyInfo(ec.name) ?? [];
      assert.ok(v, 'key exists in the vault');
      assert.equal(v.kty, 'EC-HSM');
      assert.equal(v.crv, 'P-384');
      assert.deepEqual(v.keyOps, ['sign']);
      assert.equal(v.exportable, false);
      assert.equal(v.enabled, true);
      assert.deepEqual(v.tags, { 'keywarden-scope': scope, 'keywarden-key-id': ec.keyId });
      assert.equal(v.notBefore?.getTime(), notBefore.getTime());
      assert.equal(v.expiresOn?.getTime(), notAfter.getTime());
      assert.equal(ec.ref.ref['version'], v.version, 'ref carries the version');

      const rsa = await generate(b, 'RS256');
      assert.equal(server.keyInfo(rsa.name)?.[0]?.kty, 'RSA-HSM');
    });

    it('are software-protected (kty EC/RSA) only when keyProtection is software', async () => {
      const b = await open({ keyProtection: 'software' });
      const ec = await generate(b, 'ES256');
      assert.equal(server.keyInfo(ec.name)?.[0]?.kty, 'EC');
      const keyId = randomUUID();
      const g = await b.generate(b.planKey({ scope, keyId }), {
        alg: 'PS256',
        rsaBits: 3072,
        scope,
        keyId,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + HOUR),
      });
      assert.equal(server.keyInfo(g.ref.ref['name'] ?? '')?.[0]?.kty, 'RSA');
      assert.equal(Buffer.from(g.publicJwk.n ?? '', 'base64url').length * 8, 3072);
    });

    it('generate refuses a name that already exists and leaves that key untouched', async () => {
      const b = await open();
      const k = await generate(b, 'ES256');
      const planned = b.planKey({ scope, keyId: k.keyId });
      await rejectsWith(
        b.generate(planned, {
          alg: 'ES256',
          scope,
          keyId: k.keyId,
          notBefore: new Date(),
          notAfter: new Date(Date.now() + HOUR),
        }),
        'BACKEND_OBJECT_EXISTS',
        'second generate',
      );
      assert.equal(server.keyInfo(k.name)?.length, 1, 'no second version added');
      assert.equal(server.keyInfo(k.name)?.[0]?.enabled, true);
    });
  });

  describe('planKey', () => {
    it('is pure, deterministic and always yields a valid Key Vault name', async () => {
      const b = await open();
      const before = server.requests.length;
      const id = randomUUID();
      const a = b.planKey({ scope: 'tenant_42.eu', keyId: id });
      assert.deepEqual(b.planKey({ scope: 'tenant_42.eu', keyId: id }), a, 'deterministic');
      assert.equal(server.requests.length, before, 'planKey made no request');
      assert.equal(a.backend, 'azure-integ');
      assert.equal(a.ref['vaultUrl'], server.vaultUrl);
      assert.equal(a.ref['version'], '');
      const name = a.ref['name'] ?? '';
      assert.ok(isValidKeyName(name), name);
      assert.ok(name.startsWith('kwi-tenant-42-eu-'), name);
      assert.equal(keyName('kwi', 'plain', id), `kwi-plain-${id}`);
      // sanitizing must not merge distinct scopes, and long inputs still fit
      assert.notEqual(keyName('kwi', 'a_b', id), keyName('kwi', 'a.b', id));
      const long = keyName('kwi', 'x'.repeat(200), id);
      assert.ok(isValidKeyName(long) && long.length <= 127, long);
      assert.notEqual(long, keyName('kwi', 'x'.repeat(201), id));
    });
  });

  it('tokens signed through the backend verify with jose (jwtVerify, every alg)', async () => {
    const b = await open();
    for (const alg of ['ES256', 'ES384', 'RS256', 'PS256'] as const) {
      const k = await generate(b, alg);
      const kid = await calculateJwkThumbprint(k.jwk as JWK);
      const now = Math.floor(Date.now() / 1000);
      const input = `${b64u(JSON.stringify({ alg, kid, typ: 'JWT' }))}.${b64u(
        JSON.stringify({ iss: 'https://issuer.test', aud: 'api', sub: 'alice', iat: now, exp: now + 300 }),
      )}`;
      const sig = await b.sign(k.ref, alg, Buffer.from(input));
      const { payload, protectedHeader } = await jwtVerify(
        `${input}.${b64u(sig)}`,
        await importJWK(k.jwk as JWK, alg),
        {
          issuer: 'https://issuer.test',
          audience: 'api',
          algorithms: [alg],
        },
      );
      assert.equal(payload.sub, 'alice');
      assert.equal(protectedHeader.kid, kid);
      // the signature is bound to this key: another key of the same alg rejects it
      const other = await generate(b, alg);
      await assert.rejects(
        jwtVerify(`${input}.${b64u(sig)}`, await importJWK(other.jwk as JWK, alg)),
        `${alg}: other key`,
      );
    }
  });

  describe('the vault enforces key validity itself (defence in depth)', () => {
    it('an expired key is refused by the server: BACKEND_KEY_EXPIRED', async () => {
      const b = await open();
      const k = await generate(b, 'ES256');
      await b.sign(k.ref, 'ES256', Buffer.from('a.b'));
      // exp moves into the past behind keywarden's back: the SDK's cached view still says valid,
      // so the refusal can only come from the vault
      server.setAttributes(k.name, k.ref.ref['version'] ?? '', { expiresOn: new Date(Date.now() - 1000) });
      await rejectsWith(b.sign(k.ref, 'ES256', Buffer.from('a.b')), 'BACKEND_KEY_EXPIRED', 'sign expired');
      const last = server.requests.filter((r) => r.op === 'sign').at(-1);
      assert.equal(last?.status, 403, 'the vault answered the sign with 403');
    });

    it('a key generated with notAfter in the past, or notBefore in the future, does not sign', async () => {
      const b = await open();
      const expired = await generate(b, 'RS256', {
        notBefore: new Date(Date.now() - 2 * HOUR),
        notAfter: new Date(Date.now() - HOUR),
      });
      await rejectsWith(b.sign(expired.ref, 'RS256', Buffer.from('a.b')), 'BACKEND_KEY_EXPIRED', 'expired');
      const future = await generate(b, 'ES256', {
        notBefore: new Date(Date.now() + HOUR),
        notAfter: new Date(Date.now() + 2 * HOUR),
      });
      await rejectsWith(
        b.sign(future.ref, 'ES256', Buffer.from('a.b')),
        'BACKEND_KEY_EXPIRED',
        'not yet valid',
      );
    });

    it('a disabled key is refused by the server', async () => {
      const b = await open();
      const k = await generate(b, 'PS256');
      await b.sign(k.ref, 'PS256', Buffer.from('a.b'));
      server.setAttributes(k.name, '', { enabled: false });
      const err = await rejectsWith(
        b.sign(k.ref, 'PS256', Buffer.from('a.b')),
        'BACKEND_KEY_EXPIRED',
        'disabled',
      );
      assert.match(err.message, /KeyDisabled/);
      assert.equal(server.requests.filter((r) => r.op === 'sign').at(-1)?.status, 403);
    });
  });

  describe('throttling and failures', () => {
    it('429 with Retry-After is retried after the delay the vault asked for, then succeeds', async () => {
      const b = await open();
      const k = await generate(b, 'ES256');
      await b.sign(k.ref, 'ES256', Buffer.from('warm.up'));
      server.inject({ op: 'sign', status: 429, retryAfterSeconds: 1, times: 1 });
      const before = server.count('sign');
      const sig = await b.sign(k.ref, 'ES256', Buffer.from('a.b'));
      assert.equal(sig.length, 64);
      const signs = server.requests.filter((r) => r.op === 'sign').slice(before);
      assert.deepEqual(
        signs.map((r) => r.status),
        [429, 200],
        'one throttled attempt, one retry',
      );
      const gap = (signs[1]?.at ?? 0) - (signs[0]?.at ?? 0);
      assert.ok(gap >= 950 && gap < 3000, `retry came ${gap} ms after the 429 (Retry-After: 1)`);
    });

    it('persistent 429 ends in BACKEND_THROTTLED after a bounded number of retries', async () => {
      const b = await open({}, { retry: { maxRetries: 2, baseDelayMs: 10 } });
      const k = await generate(b, 'ES256');
      await b.sign(k.ref, 'ES256', Buffer.from('warm.up'));
      server.inject({ op: 'sign', status: 429, retryAfterSeconds: 0, times: Infinity });
      const before = server.count('sign');
      const err = await rejectsWith(
        b.sign(k.ref, 'ES256', Buffer.from('a.b')),
        'BACKEND_THROTTLED',
        'throttled',
      );
      assert.equal(server.count('sign') - before, 3, 'first attempt + 2 retries');
      assert.match(err.message, /after 2 retries/);
    });

    it('a Retry-After longer than the cap is not waited out: BACKEND_THROTTLED at once, with the delay', async () => {
      const b = await open();
      const k = await generate(b, 'ES256');
      await b.sign(k.ref, 'ES256', Buffer.from('warm.up'));
      server.inject({ op: 'sign', status: 429, retryAfterSeconds: 120, times: Infinity });
      const before = server.count('sign');
      const t0 = Date.now();
      const err = await rejectsWith(
        b.sign(k.ref, 'ES256', Buffer.from('a.b')),
        'BACKEND_THROTTLED',
        'throttled',
      );
      assert.ok(Date.now() - t0 < 2000, 'did not block for two minutes');
      assert.equal(server.count('sign') - before, 1);
      assert.deepEqual(err.details, { retryAfterSeconds: 120 });
    });

    it('a transient 503 or dropped connection is retried; persistent 5xx is BACKEND_UNAVAILABLE with a clear message', async () => {
      const b = await open();
      const k = await generate(b, 'ES384');
      await b.sign(k.ref, 'ES384', Buffer.from('warm.up'));
      server.inject({ op: 'sign', status: 503, times: 1 });
      server.inject({ op: 'sign', dropConnection: true, times: 1 });
      assert.equal((await b.sign(k.ref, 'ES384', Buffer.from('a.b'))).length, 96);

      server.inject({ op: 'sign', status: 500, times: Infinity });
      const before = server.count('sign');
      const err = await rejectsWith(b.sign(k.ref, 'ES384', Buffer.from('a.b')), 'BACKEND_UNAVAILABLE', '500');
      assert.equal(server.count('sign') - before, 4, 'first attempt + 3 retries');
      assert.ok(err.message.includes(`127.0.0.1`), err.message);
      assert.match(err.message, /sign ES384 with key kwi-/);
      assert.match(err.message, /HTTP 500 InternalServerError/);
      assert.match(err.message, /gave up after 3 retries/);
    });

    it('a vault that does not answer in time: the attempt is aborted and retried, then BACKEND_UNAVAILABLE', async () => {
      const b = await open({}, { retry: { maxRetries: 1, baseDelayMs: 10, requestTimeoutMs: 400 } });
      const k = await generate(b, 'ES256');
      await b.sign(k.ref, 'ES256', Buffer.from('warm.up'));
      server.inject({ op: 'sign', delayMs: 1_000, times: 1 });
      assert.equal((await b.sign(k.ref, 'ES256', Buffer.from('a.b'))).length, 64, 'second attempt answered');
      server.inject({ op: 'sign', delayMs: 1_000, times: Infinity });
      const t0 = Date.now();
      const err = await rejectsWith(
        b.sign(k.ref, 'ES256', Buffer.from('a.b')),
        'BACKEND_UNAVAILABLE',
        'hung',
      );
      assert.ok(Date.now() - t0 < 1_500, 'bounded by the per-request timeout, not by the vault');
      assert.match(err.message, /no answer from the vault in time/);
    });

    it('an unreachable vault is BACKEND_UNAVAILABLE and health says so without throwing', async () => {
      const gone = await startKeyVaultServer();
      const b = await openAzureKeyVaultBackend(config({ vaultUrl: gone.vaultUrl }), {
        credential: gone.credential(),
        retry: { maxRetries: 1, baseDelayMs: 10, requestTimeoutMs: 2_000 },
      });
      opened.push(b);
      await gone.close();
      const err = await rejectsWith(b.list(), 'BACKEND_UNAVAILABLE', 'list');
      assert.match(err.message, /vault unreachable \(ECONNREFUSED/);
      const h = await b.health();
      assert.equal(h.ok, false);
      assert.match(h.detail, /BACKEND_UNAVAILABLE/);
    });
  });

  describe('generate never leaves a half-made key', () => {
    it('a 500 after the vault created the key: the key is removed (and purged), create not retried', async () => {
      const b = await open();
      const keyId = randomUUID();
      const ref = b.planKey({ scope, keyId });
      const name = ref.ref['name'] ?? '';
      server.inject({ op: 'create', status: 500, afterCommit: true });
      const creates = server.count('create');
      const err = await rejectsWith(
        b.generate(ref, {
          alg: 'ES256',
          scope,
          keyId,
          notBefore: new Date(),
          notAfter: new Date(Date.now() + HOUR),
        }),
        'BACKEND_UNAVAILABLE',
        'generate',
      );
      assert.match(err.message, /half-made key .* was removed/);
      assert.equal(server.count('create') - creates, 1, 'an ambiguous create is never blindly retried');
      assert.ok(!server.keyNames().includes(name), 'no live key left');
      assert.ok(!server.deletedKeyNames().includes(name), 'no recoverable key left (purgeOnDestroy)');
      assert.equal(await b.exists(ref), false);
    });

    it('a dropped connection after the create: without purgeOnDestroy the key is disabled and soft-deleted', async () => {
      const b = await open({ purgeOnDestroy: false });
      const keyId = randomUUID();
      const ref = b.planKey({ scope, keyId });
      const name = ref.ref['name'] ?? '';
      server.inject({ op: 'create', dropConnection: true, afterCommit: true });
      await rejectsWith(
        b.generate(ref, {
          alg: 'RS256',
          scope,
          keyId,
          notBefore: new Date(),
          notAfter: new Date(Date.now() + HOUR),
        }),
        'BACKEND_UNAVAILABLE',
        'generate',
      );
      assert.ok(!server.keyNames().includes(name), 'no live key left');
      assert.ok(server.deletedKeyNames().includes(name), 'soft-deleted, recoverable by an operator');
      assert.equal((await b.list()).filter((o) => o.keyId === keyId).length, 0);
    });

    it('a 429 on create is retried (the vault did nothing) and yields exactly one key', async () => {
      const b = await open();
      server.inject({ op: 'create', status: 429, retryAfterSeconds: 0, times: 1 });
      const creates = server.count('create');
      const k = await generate(b, 'ES256');
      assert.equal(server.count('create') - creates, 2);
      assert.equal(server.keyInfo(k.name)?.length, 1);
    });
  });

  describe('authentication and authorization', () => {
    it('authenticates through the Key Vault 401 challenge; api-version arrives percent-encoded', async () => {
      const cred = server.credential();
      const b = await open({}, { credential: cred });
      const before = server.requests.length;
      await generate(b, 'ES256');
      const mine = server.requests.slice(before);
      assert.equal(mine[0]?.status, 401, 'the first request is the unauthenticated challenge probe');
      assert.ok(
        mine.slice(1).every((r) => r.status === 200 || r.status === 404),
        JSON.stringify(mine),
      );
      assert.ok(
        mine.every((r) => r.rawQuery.includes('api%2Dversion=')),
        mine.map((r) => r.rawQuery).join(' '),
      );
      assert.deepEqual(cred.calls[0], {
        scopes: ['https://vault.azure.net/.default'],
        tenantId: server.tenantId,
      });
    });

    it('a credential the vault does not accept: BACKEND_UNAUTHORIZED everywhere, health not ok', async () => {
      const b = await open({}, { credential: staticTokenCredential('not-a-valid-token') });
      const keyId = randomUUID();
      const ref = b.planKey({ scope, keyId });
      await rejectsWith(
        b.generate(ref, {
          alg: 'ES256',
          scope,
          keyId,
          notBefore: new Date(),
          notAfter: new Date(Date.now() + HOUR),
        }),
        'BACKEND_UNAUTHORIZED',
        'generate',
      );
      await rejectsWith(b.list(), 'BACKEND_UNAUTHORIZED', 'list');
      const good = await generate(await open(), 'ES256');
      await rejectsWith(b.sign(good.ref, 'ES256', Buffer.from('a.b')), 'BACKEND_UNAUTHORIZED', 'sign');
      const h = await b.health();
      assert.equal(h.ok, false);
      assert.match(h.detail, /BACKEND_UNAUTHORIZED/);
    });

    it('an identity without the sign permission: BACKEND_UNAUTHORIZED (not mistaken for an expired key)', async () => {
      const owner = await open();
      const k = await generate(owner, 'ES256');
      const token = server.issueToken({ permissions: ['get', 'list', 'listVersions'] });
      const reader = await open({}, { credential: server.credential(token) });
      const err = await rejectsWith(
        reader.sign(k.ref, 'ES256', Buffer.from('a.b')),
        'BACKEND_UNAUTHORIZED',
        'sign',
      );
      assert.match(err.message, /ForbiddenByRbac/);
      assert.deepEqual(await reader.publicKey(k.ref, 'ES256'), k.jwk, 'reading is still allowed');
    });
  });

  describe('TLS', () => {
    it('the test server certificate is refused without caFile (verification is never off)', async () => {
      const b = await open({ caFile: undefined });
      const err = await rejectsWith(b.list(), 'BACKEND_UNAVAILABLE', 'list');
      assert.match(err.message, /TLS certificate not trusted .*caFile/);
      assert.equal((await b.health()).ok, false);
    });

    it('a caFile holding a different CA does not make the server trusted', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kw-kv-otherca-'));
      try {
        const otherCa = join(dir, 'other-ca.pem');
        await writeFile(otherCa, rootCertificates[0] ?? '');
        const b = await open({ caFile: otherCa });
        await rejectsWith(b.list(), 'BACKEND_UNAVAILABLE', 'list');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  it('EdDSA is refused before any request: BACKEND_MECHANISM_UNSUPPORTED', async () => {
    const b = await open();
    const keyId = randomUUID();
    const ref = b.planKey({ scope, keyId });
    const before = server.requests.length;
    const err = await rejectsWith(
      b.generate(ref, {
        alg: 'EdDSA',
        scope,
        keyId,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + HOUR),
      }),
      'BACKEND_MECHANISM_UNSUPPORTED',
      'generate',
    );
    assert.match(err.message, /ES256, ES384, RS256 or PS256/);
    await rejectsWith(b.sign(ref, 'EdDSA', Buffer.from('a.b')), 'BACKEND_MECHANISM_UNSUPPORTED', 'sign');
    await rejectsWith(b.publicKey(ref, 'EdDSA'), 'BACKEND_MECHANISM_UNSUPPORTED', 'publicKey');
    assert.equal(server.requests.length, before, 'nothing reached the vault');
  });

  describe('destroy and list', () => {
    it('destroy disables and soft-deletes; purges only with purgeOnDestroy', async () => {
      const keep = await open({ purgeOnDestroy: false });
      const k = await generate(keep, 'ES256');
      const purgesBefore = server.count('purge');
      await keep.destroy(k.ref);
      assert.ok(!server.keyNames().includes(k.name));
      assert.ok(server.deletedKeyNames().includes(k.name), 'recoverable');
      assert.equal(server.count('purge'), purgesBefore, 'no purge without purgeOnDestroy');
      await keep.destroy(k.ref); // idempotent

      // a later destroy with purge enabled finishes the job for an already soft-deleted key
      const purge = await open({ purgeOnDestroy: true });
      await purge.destroy(k.ref);
      assert.ok(!server.deletedKeyNames().includes(k.name), 'purged');
    });

    it('a destroy interrupted after the disable is finished by the next destroy', async () => {
      const b = await open();
      const k = await generate(b, 'ES256');
      server.inject({ op: 'delete', status: 500, times: Infinity });
      await rejectsWith(b.destroy(k.ref), 'BACKEND_UNAVAILABLE', 'destroy');
      assert.equal(
        server.keyInfo(k.name)?.[0]?.enabled,
        false,
        'disabled first: cannot sign while half-destroyed',
      );
      await rejectsWith(
        b.sign(k.ref, 'ES256', Buffer.from('a.b')),
        'BACKEND_KEY_EXPIRED',
        'sign half-destroyed',
      );
      server.clearFaults();
      await b.destroy(k.ref);
      assert.ok(!server.keyNames().includes(k.name) && !server.deletedKeyNames().includes(k.name));
    });

    it('list shows only keys under this backend prefix, one entry per version, with tags and state', async () => {
      const b = await open({ keyPrefix: 'kwlist' });
      const k = await generate(b, 'ES256');
      const foreign = new KeyClient(server.vaultUrl, server.credential(), {
        disableChallengeResourceVerification: true,
        tlsOptions: { ca: server.caPem },
      });
      await foreign.createEcKey(`other-${randomUUID()}`, { curve: 'P-256' });
      const listed = await b.list();
      assert.ok(listed.length >= 1);
      assert.ok(
        listed.every((o) => o.label.startsWith('kwlist-')),
        JSON.stringify(listed.map((o) => o.label)),
      );
      const mine = listed.find((o) => o.keyId === k.keyId);
      assert.deepEqual(mine, {
        ref: k.ref,
        label: k.name,
        keyId: k.keyId,
        scope,
        kind: 'key',
        attributes: { extractable: false, enabled: true },
      });
    });
  });

  it("list follows the vault's pages and returns every key of its prefix exactly once", async () => {
    const b = await open({ keyPrefix: 'kwpages' });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await generate(b, 'ES256')).keyId);
    const from = server.requests.length;
    const listed = await b.list();
    assert.deepEqual(listed.map((o) => o.keyId).sort(), [...made].sort());
    const pages = server.requests.slice(from).filter((r) => r.op === 'list');
    assert.ok(pages.length >= 3, `the 5 keys and the others fit in ${pages.length} pages of 2?`);
    assert.ok(
      pages.slice(1).every((r) => r.rawQuery.includes('skiptoken')),
      pages.map((r) => r.rawQuery).join('\n'),
    );
  });

  it('the vault never hands out private key material, even to a direct SDK client', async () => {
    const b = await open();
    const direct = new KeyClient(server.vaultUrl, server.credential(), {
      disableChallengeResourceVerification: true,
      tlsOptions: { ca: server.caPem },
    });
    for (const alg of ['ES256', 'RS256'] as const) {
      const k = await generate(b, alg);
      const key = await direct.getKey(k.name);
      assert.ok(key.key?.x ?? key.key?.n, `${alg}: public part present`);
      for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 't'] as const) {
        assert.equal(key.key?.[m], undefined, `${alg}: private member ${m} returned`);
      }
    }
  });

  describe('configuration', () => {
    it('refuses a non-https vault URL, an unreadable caFile and a missing client secret', async () => {
      await rejectsWith(
        openAzureKeyVaultBackend(config({ vaultUrl: 'http://127.0.0.1:1' })),
        'CONFIG_INVALID',
        'http',
      );
      await rejectsWith(
        openAzureKeyVaultBackend(config({ caFile: join(server.caFile, '..', 'missing.pem') })),
        'CONFIG_INVALID',
        'caFile',
      );
      await rejectsWith(
        openAzureKeyVaultBackend(
          config({
            credential: {
              type: 'client-secret',
              tenantId: 't',
              clientId: 'c',
              secret: { env: 'KEYWARDEN_TEST_SURELY_UNSET_SECRET' },
            },
          }),
        ),
        'CONFIG_INVALID',
        'secret',
      );
    });
  });
});
