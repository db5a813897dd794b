import { createHash } from 'node:crypto';
import type {
  CreateKeyOptions,
  CryptographyClient,
  KeyClient,
  KeyProperties,
  KeyVaultKey,
} from '@azure/keyvault-keys';
import type {
  BackendHealth,
  BackendObject,
  GeneratedKey,
  GenerateKeyRequest,
  InventoryEntry,
  KeyBackend,
  KeyInspection,
  PlanKeyRequest,
} from '../key-backend';
import { keySpecFor, RSA_MODULUS_BITS, type SigningAlg } from '../../policy/algorithms';
import { hasCode, KeywardenError } from '../../policy/errors';
import type { BackendRef, PublicJwk } from '../../policy/key';
import type { AzureBackendConfig } from './config';
import { mapAzureError } from './azure-errors';
import { isValidKeyName, keyName, keyNamePrefix, TAG_KEY_ID, TAG_SCOPE } from './key-name';
import { removeKey, rollbackCreate, versionsOf, type VaultAccess } from './key-removal';
import { toPublicJwk } from './public-jwk';
import { sealFromTags, sealTags } from './seal-tags';
import { callVault, type RetrySettings } from './vault-call';

/** Timing knobs of one backend (defaults in open-azure-keyvault-backend.ts). */
export interface AzureKeyVaultBackendSettings {
  retry: RetrySettings;
  /** How often destroy() checks that a deleted key reached the deleted state before purging it. */
  deletePollIntervalMs: number;
  /** How long destroy() waits for that before giving up (the next destroy picks up where it stopped). */
  deleteTimeoutMs: number;
}

interface KeyAddress {
  name: string;
  /** '' = the latest version (a planned key that has not been generated yet). */
  version: string;
}

const VERSION_RE = /^[0-9A-Za-z]{0,64}$/;
const MAX_CACHED_CRYPTO_CLIENTS = 1024;

/**
 * KeyBackend over Azure Key Vault (or Managed HSM) keys through @azure/keyvault-keys.
 * Keys are created non-exportable with key_ops ["sign"], HSM-protected unless the config says
 * `keyProtection: software`, and carry keywarden tags (scope, key id). Signing hashes in Node and
 * sends only the digest. Every call goes through callVault (bounded retries, error mapping).
 */
export class AzureKeyVaultBackend implements KeyBackend {
  readonly name: string;
  readonly type = 'azure' as const;
  /** The vault URL without a trailing slash, as recorded in every BackendRef. */
  readonly vaultUrl: string;
  private readonly host: string;
  private readonly namePrefix: string;
  private readonly cryptoClients = new Map<string, CryptographyClient>();
  private readonly closing = new AbortController();
  /** The client and guarded call, for the removal steps in key-removal.ts. */
  private readonly vault: VaultAccess;

  constructor(
    private readonly client: KeyClient,
    private readonly config: AzureBackendConfig,
    private readonly settings: AzureKeyVaultBackendSettings,
  ) {
    this.name = config.name;
    this.vaultUrl = config.vaultUrl.replace(/\/+$/, '');
    this.host = new URL(this.vaultUrl).host;
    this.namePrefix = keyNamePrefix(config.keyPrefix);
    this.vault = {
      client,
      call: (what, fn, idempotent) => this.call(what, fn, idempotent),
      what: (action) => this.what(action),
    };
  }

  planKey(request: PlanKeyRequest): BackendRef {
    return this.ref(keyName(this.config.keyPrefix, request.scope, request.keyId), '');
  }

  async generate(ref: BackendRef, request: GenerateKeyRequest): Promise<GeneratedKey> {
    const a = this.address(ref);
    if (a.name !== keyName(this.config.keyPrefix, request.scope, request.keyId)) {
      throw new KeywardenError('INTERNAL', `ref name '${a.name}' does not match scope/keyId of the request`);
    }
    const alg = request.alg;
    const spec = keySpecFor(alg);
    if (spec.kty === 'OKP') throw unsupported(alg);
    if (Number.isNaN(request.notBefore.getTime()) || Number.isNaN(request.notAfter.getTime())) {
      throw new KeywardenError('INTERNAL', 'generate: notBefore/notAfter must be valid dates');
    }
    const rsaBits = request.rsaBits ?? 2048;
    if (!RSA_MODULUS_BITS.includes(rsaBits)) {
      throw new KeywardenError('BACKEND_MECHANISM_UNSUPPORTED', `RSA modulus of ${String(rsaBits)} bits`);
    }
    const what = this.what(`create ${alg} key ${a.name}`);
    // Creating over an existing name would add a version to someone else's key (or to a
    // half-made one a crash left behind): refuse, and let reconcile sort out the existing object.
    if (await this.keyExists({ name: a.name, version: '' })) {
      throw new KeywardenError('BACKEND_OBJECT_EXISTS', `${what}: a key with this name already exists`);
    }
    const common: CreateKeyOptions = {
      keyOps: ['sign'],
      exportable: false,
      hsm: this.config.keyProtection !== 'software',
      enabled: true,
      notBefore: request.notBefore,
      expiresOn: request.notAfter,
      tags: { [TAG_SCOPE]: request.scope, [TAG_KEY_ID]: request.keyId },
    };
    let key: KeyVaultKey;
    try {
      key = await this.call(
        what,
        (signal) =>
          spec.kty === 'EC'
            ? this.client.createEcKey(a.name, { ...common, curve: spec.crv, abortSignal: signal })
            : this.client.createRsaKey(a.name, { ...common, keySize: rsaBits, abortSignal: signal }),
        false,
      );
    } catch (e) {
      throw await this.rollback(mapAzureError(e, what), a.name, request.keyId);
    }
    try {
      const publicJwk = toPublicJwk(key.key, alg, what);
      const version = key.properties.version;
      if (!version || !VERSION_RE.test(version)) {
        throw new KeywardenError('BACKEND_ERROR', `${what}: the vault returned no usable key version`);
      }
      return { ref: this.ref(a.name, version), publicJwk };
    } catch (e) {
      throw await this.rollback(mapAzureError(e, what), a.name, request.keyId);
    }
  }

  async sign(ref: BackendRef, alg: SigningAlg, signingInput: Uint8Array): Promise<Uint8Array> {
    const a = this.address(ref);
    const spec = keySpecFor(alg);
    if (spec.kty === 'OKP') throw unsupported(alg);
    const digest = createHash(spec.hash).update(signingInput).digest();
    const what = this.what(`sign ${alg} with key ${label(a)}`);
    const crypto = this.cryptoClient(a);
    let result: Uint8Array;
    try {
      ({ result } = await this.call(
        what,
        (signal) => crypto.sign(alg, digest, { abortSignal: signal }),
        true,
      ));
    } catch (e) {
      if (hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) this.cryptoClients.delete(cacheKey(a));
      throw e;
    }
    if (spec.kty === 'EC' && result.length !== spec.signatureBytes) {
      throw new KeywardenError(
        'BACKEND_ERROR',
        `${what}: the vault returned a ${result.length}-byte signature, ${alg} needs ${spec.signatureBytes} (raw r||s)`,
      );
    }
    return new Uint8Array(result);
  }

  async publicKey(ref: BackendRef, alg: SigningAlg): Promise<PublicJwk> {
    const a = this.address(ref);
    if (keySpecFor(alg).kty === 'OKP') throw unsupported(alg);
    const what = this.what(`read key ${label(a)}`);
    const key = await this.call(
      what,
      (signal) => this.client.getKey(a.name, { version: a.version, abortSignal: signal }),
      true,
    );
    return toPublicJwk(key.key, alg, what);
  }

  async exists(ref: BackendRef): Promise<boolean> {
    return this.keyExists(this.address(ref));
  }

  /**
   * Disables the version (so it cannot sign even if what follows fails), soft-deletes the key,
   * and purges it when `purgeOnDestroy`. Each step treats "not found" as already done, so a
   * destroy interrupted anywhere is finished by the next call.
   */
  async destroy(ref: BackendRef, owner?: string): Promise<void> {
    const a = this.address(ref);
    if (owner !== undefined) {
      // A key whose tags name another row is not `owner`'s to destroy.
      const ids = (await versionsOf(this.vault, a.name)).map((v) => v.tags?.[TAG_KEY_ID] ?? null);
      if (ids.some((id) => id !== null && id !== owner)) return;
    }
    this.evict(a.name);
    await removeKey(this.vault, this.removal(), a.name, a.version === '' ? null : [a.version]);
  }

  async list(): Promise<BackendObject[]> {
    return (await this.listVersions()).map((v) => this.describe(v));
  }

  /** Every version of every key with this backend's name prefix. */
  private async listVersions(): Promise<KeyProperties[]> {
    const names = await this.call(
      this.what('list keys'),
      async (signal) => {
        const found: string[] = [];
        for await (const p of this.client.listPropertiesOfKeys({ abortSignal: signal })) {
          if (p.name.startsWith(this.namePrefix)) found.push(p.name);
        }
        return found;
      },
      true,
    );
    const out: KeyProperties[] = [];
    for (const name of names) out.push(...(await versionsOf(this.vault, name)));
    return out;
  }

  refIdentity(ref: BackendRef): string {
    return cacheKey(this.address(ref));
  }

  /** The seal goes into tags of the key version, next to the scope and key id tags. */
  async attachSeal(ref: BackendRef, seal: Uint8Array): Promise<void> {
    const a = this.address(ref);
    const what = this.what(`seal key ${label(a)}`);
    const key = await this.call(
      what,
      (signal) => this.client.getKey(a.name, { version: a.version, abortSignal: signal }),
      true,
    );
    if (key.properties.enabled === false) {
      throw new KeywardenError('BACKEND_OBJECT_NOT_FOUND', `${what}: the key version is disabled`);
    }
    const tags = key.properties.tags ?? {};
    if (sealFromTags(tags) !== null) {
      throw new KeywardenError('BACKEND_OBJECT_EXISTS', `${what}: the key is already sealed`);
    }
    await this.call(
      what,
      (signal) =>
        this.client.updateKeyProperties(a.name, a.version, {
          tags: { ...tags, ...sealTags(seal) },
          abortSignal: signal,
        }),
      true,
    );
  }

  /** Enabled versions only: destroy disables a version before anything else. */
  async inventory(): Promise<InventoryEntry[]> {
    const out: InventoryEntry[] = [];
    for (const v of await this.listVersions()) {
      if (v.enabled === false) continue;
      const tags = v.tags ?? {};
      out.push({
        identity: cacheKey({ name: v.name, version: v.version ?? '' }),
        ref: this.ref(v.name, v.version ?? ''),
        label: v.name,
        keyId: tags[TAG_KEY_ID] ?? null,
        scope: tags[TAG_SCOPE] ?? null,
        sealed: sealFromTags(tags) !== null,
      });
    }
    return out;
  }

  /** One GET per key (Key Vault has no listing that carries public keys and tags together). */
  async inspectKeys(keys: readonly { ref: BackendRef; alg: SigningAlg }[]): Promise<KeyInspection[]> {
    const out: KeyInspection[] = [];
    for (const k of keys) out.push(await this.inspectKey(k.ref, k.alg));
    return out;
  }

  private async inspectKey(ref: BackendRef, alg: SigningAlg): Promise<KeyInspection> {
    const a = this.address(ref);
    if (keySpecFor(alg).kty === 'OKP') return { status: 'unreadable', problem: unsupported(alg).message };
    const what = this.what(`read key ${label(a)}`);
    let key: KeyVaultKey;
    try {
      key = await this.call(
        what,
        (signal) => this.client.getKey(a.name, { version: a.version, abortSignal: signal }),
        true,
      );
    } catch (e) {
      if (hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) return { status: 'missing' };
      throw e;
    }
    // destroy() disables a version first: a disabled key signs nothing and vouches for nothing.
    if (key.properties.enabled === false) return { status: 'missing' };
    const tags = key.properties.tags ?? {};
    let publicJwk: PublicJwk;
    try {
      publicJwk = toPublicJwk(key.key, alg, what);
    } catch (e) {
      return { status: 'unreadable', problem: (e as Error).message };
    }
    return {
      status: 'found',
      facts: {
        publicJwk,
        keyId: tags[TAG_KEY_ID] ?? null,
        scope: tags[TAG_SCOPE] ?? null,
        seal: sealFromTags(tags),
        validity: {
          notBefore: key.properties.notBefore ?? null,
          notAfter: key.properties.expiresOn ?? null,
          precision: 'second',
        },
      },
    };
  }

  async health(): Promise<BackendHealth> {
    const what = this.what('health probe (list keys)');
    try {
      await callVault(
        what,
        async (signal) => {
          await this.client.listPropertiesOfKeys({ abortSignal: signal }).byPage({ maxPageSize: 1 }).next();
        },
        { ...this.settings.retry, maxRetries: 0 },
        { idempotent: true },
      );
      return { ok: true, detail: `Azure Key Vault ${this.host}: reachable and authorized` };
    } catch (e) {
      const err = mapAzureError(e, what);
      return { ok: false, detail: `${err.code}: ${err.message}` };
    }
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.cryptoClients.clear();
  }

  // ---- internals ----

  private call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>, idempotent: boolean): Promise<T> {
    if (this.closing.signal.aborted) {
      return Promise.reject(new KeywardenError('BACKEND_UNAVAILABLE', `${what}: backend is closed`));
    }
    return callVault(what, fn, this.settings.retry, { idempotent, signal: this.closing.signal });
  }

  private what(action: string): string {
    return `Azure Key Vault ${this.host}: ${action}`;
  }

  private ref(name: string, version: string): BackendRef {
    return { backend: this.name, ref: { vaultUrl: this.vaultUrl, name, version } };
  }

  private address(ref: BackendRef): KeyAddress {
    const { vaultUrl, name, version = '' } = ref.ref;
    if (ref.backend !== this.name) {
      throw new KeywardenError(
        'INTERNAL',
        `ref of backend '${ref.backend}' handed to backend '${this.name}'`,
      );
    }
    if (vaultUrl?.replace(/\/+$/, '') !== this.vaultUrl) {
      throw new KeywardenError(
        'INTERNAL',
        `ref points at vault ${String(vaultUrl)}, this backend uses ${this.vaultUrl}`,
      );
    }
    if (name === undefined || !isValidKeyName(name) || !VERSION_RE.test(version)) {
      throw new KeywardenError('INTERNAL', `malformed Azure key ref ${JSON.stringify(ref.ref)}`);
    }
    return { name, version };
  }

  /** One CryptographyClient per key version, sharing the KeyClient's pipeline (auth, TLS, retries). */
  private cryptoClient(a: KeyAddress): CryptographyClient {
    const k = cacheKey(a);
    let c = this.cryptoClients.get(k);
    if (!c) {
      if (this.cryptoClients.size >= MAX_CACHED_CRYPTO_CLIENTS) {
        const oldest = this.cryptoClients.keys().next();
        if (!oldest.done) this.cryptoClients.delete(oldest.value);
      }
      c = this.client.getCryptographyClient(a.name, a.version === '' ? {} : { keyVersion: a.version });
      this.cryptoClients.set(k, c);
    }
    return c;
  }

  private evict(name: string): void {
    for (const k of [...this.cryptoClients.keys()]) {
      if (k.startsWith(`${name.toLowerCase()}/`)) this.cryptoClients.delete(k);
    }
  }

  private async keyExists(a: KeyAddress): Promise<boolean> {
    try {
      await this.call(
        this.what(`read key ${label(a)}`),
        (signal) => this.client.getKey(a.name, { version: a.version, abortSignal: signal }),
        true,
      );
      return true;
    } catch (e) {
      if (hasCode(e, 'BACKEND_OBJECT_NOT_FOUND')) return false;
      throw e;
    }
  }

  private describe(v: KeyProperties): BackendObject {
    const tags = v.tags ?? {};
    return {
      ref: this.ref(v.name, v.version ?? ''),
      label: v.name,
      keyId: tags[TAG_KEY_ID] ?? null,
      scope: tags[TAG_SCOPE] ?? null,
      kind: 'key',
      attributes: {
        extractable: v.exportable === true,
        ...(v.enabled === undefined ? {} : { enabled: v.enabled }),
      },
    };
  }

  private removal() {
    return { purgeOnDestroy: this.config.purgeOnDestroy, ...this.settings };
  }

  /** See rollbackCreate: removes a key a failed create may have left, then the error to throw. */
  private rollback(err: KeywardenError, name: string, keyId: string): Promise<KeywardenError> {
    return rollbackCreate(this.vault, err, name, keyId, async (versions) => {
      this.evict(name);
      await removeKey(this.vault, this.removal(), name, versions);
    });
  }
}

function unsupported(alg: SigningAlg): KeywardenError {
  return new KeywardenError(
    'BACKEND_MECHANISM_UNSUPPORTED',
    `Azure Key Vault has no ${alg} keys (it signs with EC P-256/P-384 and RSA only): use ES256, ES384, RS256 or PS256 for scopes on this backend`,
  );
}

function label(a: KeyAddress): string {
  return a.version === '' ? a.name : `${a.name}/${a.version}`;
}

function cacheKey(a: KeyAddress): string {
  return `${a.name.toLowerCase()}/${a.version}`;
}
