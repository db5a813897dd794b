import { generateKeyPair, randomBytes, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { algRequirements, CURVES, signDigest, VAULT_SIGN_ALGS, type VaultSignAlg } from './digest-sign';

const generateKeyPairAsync = promisify(generateKeyPair);

/** An error the vault answers with: HTTP status plus Key Vault's `{error:{code,message,innererror}}`. */
export class VaultError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly innerCode?: string,
  ) {
    super(message);
  }

  toBody(): unknown {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.innerCode === undefined ? {} : { innererror: { code: this.innerCode } }),
      },
    };
  }
}

export type VaultKty = 'EC' | 'EC-HSM' | 'RSA' | 'RSA-HSM';
type Curve = keyof typeof CURVES;

const EC_OPS = ['sign', 'verify'];
const RSA_OPS = ['sign', 'verify', 'encrypt', 'decrypt', 'wrapKey', 'unwrapKey'];

/** One version of a key. The private half stays in this object; nothing serializes it. */
interface KeyVersion {
  version: string;
  kty: VaultKty;
  crv?: Curve;
  privateKey: KeyObject;
  publicMembers: Record<string, string>;
  keyOps: string[];
  enabled: boolean;
  nbf?: number;
  exp?: number;
  exportable: boolean;
  created: number;
  updated: number;
  tags: Record<string, string>;
}

interface VaultKey {
  name: string;
  versions: KeyVersion[];
}

interface DeletedKey {
  key: VaultKey;
  deletedDate: number;
  scheduledPurgeDate: number;
}

/** Attribute changes as the REST body carries them (NumericDate seconds; null clears). */
export interface AttributePatch {
  enabled?: boolean;
  nbf?: number | null;
  exp?: number | null;
}

/** A read-only view of a key version for test assertions (no private material). */
export interface KeyVersionInfo {
  version: string;
  kty: VaultKty;
  crv?: string;
  keyOps: readonly string[];
  enabled: boolean;
  notBefore?: Date;
  expiresOn?: Date;
  exportable: boolean;
  tags: Readonly<Record<string, string>>;
}

const NAME_RE = /^[0-9a-zA-Z-]{1,127}$/;
const RECOVERABLE_DAYS = 90;

/**
 * The in-memory contents of one vault: keys with their versions, and soft-deleted keys.
 * Names are case-insensitive, as in Key Vault. Pure state plus Key Vault's rules; HTTP lives
 * in server.ts.
 */
export class VaultState {
  private readonly keys = new Map<string, VaultKey>();
  private readonly deleted = new Map<string, DeletedKey>();

  constructor(
    private readonly vaultUrl: string,
    private readonly now: () => Date,
  ) {}

  async create(name: string, body: Record<string, unknown>): Promise<unknown> {
    checkName(name);
    if (this.deleted.has(name.toLowerCase())) {
      throw new VaultError(
        409,
        'Conflict',
        `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`,
        'ObjectIsDeletedButRecoverable',
      );
    }
    const kty = body['kty'];
    if (kty !== 'EC' && kty !== 'EC-HSM' && kty !== 'RSA' && kty !== 'RSA-HSM') {
      throw badParameter(`The value of parameter kty is invalid: ${String(kty)}.`);
    }
    const isEc = kty.startsWith('EC');
    const allowedOps = isEc ? EC_OPS : RSA_OPS;
    const keyOps = body['key_ops'] === undefined ? [...allowedOps] : body['key_ops'];
    if (!Array.isArray(keyOps) || keyOps.some((op) => typeof op !== 'string' || !allowedOps.includes(op))) {
      throw badParameter(`Invalid key_ops for key type ${kty}: ${JSON.stringify(keyOps)}.`);
    }
    const attrs = (body['attributes'] ?? {}) as Record<string, unknown>;
    const exportable = attrs['exportable'] === true;
    if (exportable && body['release_policy'] === undefined) {
      throw badParameter('Exportable keys must have a release policy.');
    }
    let privateKey: KeyObject;
    let crv: Curve | undefined;
    if (isEc) {
      const requested = body['crv'] ?? 'P-256';
      if (requested !== 'P-256' && requested !== 'P-384' && requested !== 'P-521') {
        throw badParameter(`The value of parameter crv is invalid: ${String(requested)}.`);
      }
      crv = requested;
      ({ privateKey } = await generateKeyPairAsync('ec', { namedCurve: requested }));
    } else {
      const size = body['key_size'] ?? 2048;
      if (size !== 2048 && size !== 3072 && size !== 4096) {
        throw badParameter(`The value of parameter key_size is invalid: ${String(size)}.`);
      }
      ({ privateKey } = await generateKeyPairAsync('rsa', { modulusLength: size }));
    }
    const jwk = privateKey.export({ format: 'jwk' });
    const publicMembers: Record<string, string> = isEc
      ? { crv: jwk.crv ?? '', x: jwk.x ?? '', y: jwk.y ?? '' }
      : { n: jwk.n ?? '', e: jwk.e ?? '' };
    const t = this.seconds();
    const version: KeyVersion = {
      version: randomBytes(16).toString('hex'),
      kty,
      ...(crv === undefined ? {} : { crv }),
      privateKey,
      publicMembers,
      keyOps: keyOps as string[],
      enabled: attrs['enabled'] !== false,
      ...numericDate('nbf', attrs['nbf']),
      ...numericDate('exp', attrs['exp']),
      exportable,
      created: t,
      updated: t,
      tags: readTags(body['tags']),
    };
    const existing = this.keys.get(name.toLowerCase());
    if (existing) existing.versions.push(version);
    else this.keys.set(name.toLowerCase(), { name, versions: [version] });
    return this.bundle(existing?.name ?? name, version);
  }

  get(name: string, version: string): unknown {
    const key = this.mustFind(name);
    return this.bundle(key.name, findVersion(key, version));
  }

  list(): unknown {
    return {
      value: [...this.keys.values()].map((k) => this.item(k.name, latest(k), false)),
      nextLink: null,
    };
  }

  listVersions(name: string): unknown {
    const key = this.mustFind(name);
    return { value: key.versions.map((v) => this.item(key.name, v, true)), nextLink: null };
  }

  update(name: string, version: string, body: Record<string, unknown>): unknown {
    const key = this.mustFind(name);
    const v = findVersion(key, version);
    const attrs = (body['attributes'] ?? {}) as Record<string, unknown>;
    this.patch(v, {
      ...(typeof attrs['enabled'] === 'boolean' ? { enabled: attrs['enabled'] } : {}),
      ...('nbf' in attrs ? { nbf: (attrs['nbf'] as number | null) ?? null } : {}),
      ...('exp' in attrs ? { exp: (attrs['exp'] as number | null) ?? null } : {}),
    });
    if (body['tags'] !== undefined) v.tags = readTags(body['tags']);
    if (Array.isArray(body['key_ops'])) v.keyOps = body['key_ops'] as string[];
    return this.bundle(key.name, v);
  }

  delete(name: string): unknown {
    const key = this.mustFind(name);
    this.keys.delete(name.toLowerCase());
    const t = this.seconds();
    const entry: DeletedKey = { key, deletedDate: t, scheduledPurgeDate: t + RECOVERABLE_DAYS * 86400 };
    this.deleted.set(name.toLowerCase(), entry);
    return this.deletedBundle(entry);
  }

  getDeleted(name: string): unknown {
    const entry = this.deleted.get(name.toLowerCase());
    if (!entry) throw deletedNotFound(name);
    return this.deletedBundle(entry);
  }

  listDeleted(): unknown {
    return {
      value: [...this.deleted.values()].map((e) => ({
        ...(this.item(e.key.name, latest(e.key), false) as object),
        recoveryId: `${this.vaultUrl}/deletedkeys/${e.key.name}`,
        deletedDate: e.deletedDate,
        scheduledPurgeDate: e.scheduledPurgeDate,
      })),
      nextLink: null,
    };
  }

  purge(name: string): void {
    if (!this.deleted.delete(name.toLowerCase())) throw deletedNotFound(name);
  }

  /** Key Vault's sign: checks state and validity window first, then signs the digest. */
  sign(name: string, version: string, body: Record<string, unknown>): unknown {
    const key = this.mustFind(name);
    const v = findVersion(key, version);
    if (!v.enabled) {
      throw new VaultError(
        403,
        'Forbidden',
        'Operation sign is not allowed on a disabled key.',
        'KeyDisabled',
      );
    }
    const t = this.now().getTime() / 1000;
    if (v.nbf !== undefined && t < v.nbf) {
      throw new VaultError(
        403,
        'Forbidden',
        'Operation sign is not allowed on a key that is not yet valid.',
        'KeyNotYetValid',
      );
    }
    if (v.exp !== undefined && t >= v.exp) {
      throw new VaultError(
        403,
        'Forbidden',
        'Operation sign is not allowed on an expired key.',
        'KeyExpired',
      );
    }
    if (!v.keyOps.includes('sign')) {
      throw new VaultError(403, 'Forbidden', 'Operation sign is not permitted on this key by its key_ops.');
    }
    const alg = body['alg'];
    if (typeof alg !== 'string' || !(VAULT_SIGN_ALGS as readonly string[]).includes(alg)) {
      throw badParameter(`The value of parameter alg is invalid: ${String(alg)}.`);
    }
    const req = algRequirements(alg as VaultSignAlg);
    const keyKind = v.kty.startsWith('RSA') ? 'RSA' : v.crv;
    if (req.key !== keyKind) {
      throw badParameter(`Algorithm ${alg} is not valid for a ${v.kty} key${v.crv ? ` on ${v.crv}` : ''}.`);
    }
    const digest =
      typeof body['value'] === 'string' ? Buffer.from(body['value'], 'base64url') : Buffer.alloc(0);
    if (digest.length !== req.digestBytes) {
      throw badParameter(
        `Invalid length of digest: ${digest.length} bytes, ${alg} needs ${req.digestBytes}.`,
      );
    }
    const signature = signDigest(alg as VaultSignAlg, v.privateKey, digest);
    return { kid: this.kid(key.name, v), value: signature.toString('base64url') };
  }

  // ---- test introspection (no private material) ----

  names(): string[] {
    return [...this.keys.values()].map((k) => k.name);
  }

  deletedNames(): string[] {
    return [...this.deleted.values()].map((e) => e.key.name);
  }

  info(name: string): KeyVersionInfo[] | undefined {
    return this.keys.get(name.toLowerCase())?.versions.map((v) => ({
      version: v.version,
      kty: v.kty,
      ...(v.crv === undefined ? {} : { crv: v.crv }),
      keyOps: [...v.keyOps],
      enabled: v.enabled,
      ...(v.nbf === undefined ? {} : { notBefore: new Date(v.nbf * 1000) }),
      ...(v.exp === undefined ? {} : { expiresOn: new Date(v.exp * 1000) }),
      exportable: v.exportable,
      tags: { ...v.tags },
    }));
  }

  setAttributes(name: string, version: string, patch: AttributePatch): void {
    this.patch(findVersion(this.mustFind(name), version), patch);
  }

  // ---- helpers ----

  private patch(v: KeyVersion, p: AttributePatch): void {
    if (p.enabled !== undefined) v.enabled = p.enabled;
    if (p.nbf !== undefined) {
      if (p.nbf === null) delete v.nbf;
      else v.nbf = p.nbf;
    }
    if (p.exp !== undefined) {
      if (p.exp === null) delete v.exp;
      else v.exp = p.exp;
    }
    v.updated = this.seconds();
  }

  private mustFind(name: string): VaultKey {
    const key = this.keys.get(name.toLowerCase());
    if (!key) {
      throw new VaultError(
        404,
        'KeyNotFound',
        `A key with (name/id) ${name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command.`,
      );
    }
    return key;
  }

  private seconds(): number {
    return Math.floor(this.now().getTime() / 1000);
  }

  private kid(name: string, v: KeyVersion): string {
    return `${this.vaultUrl}/keys/${name}/${v.version}`;
  }

  private attributes(v: KeyVersion): Record<string, unknown> {
    return {
      enabled: v.enabled,
      ...(v.nbf === undefined ? {} : { nbf: v.nbf }),
      ...(v.exp === undefined ? {} : { exp: v.exp }),
      created: v.created,
      updated: v.updated,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: RECOVERABLE_DAYS,
      exportable: v.exportable,
    };
  }

  /** KeyBundle: the public JWK members only, built from an allowlist. */
  private bundle(name: string, v: KeyVersion): Record<string, unknown> {
    return {
      key: { kid: this.kid(name, v), kty: v.kty, key_ops: [...v.keyOps], ...v.publicMembers },
      attributes: this.attributes(v),
      ...(Object.keys(v.tags).length === 0 ? {} : { tags: { ...v.tags } }),
    };
  }

  private item(name: string, v: KeyVersion, withVersion: boolean): Record<string, unknown> {
    return {
      kid: withVersion ? this.kid(name, v) : `${this.vaultUrl}/keys/${name}`,
      attributes: this.attributes(v),
      ...(Object.keys(v.tags).length === 0 ? {} : { tags: { ...v.tags } }),
    };
  }

  private deletedBundle(e: DeletedKey): unknown {
    return {
      ...this.bundle(e.key.name, latest(e.key)),
      recoveryId: `${this.vaultUrl}/deletedkeys/${e.key.name}`,
      deletedDate: e.deletedDate,
      scheduledPurgeDate: e.scheduledPurgeDate,
    };
  }
}

function latest(key: VaultKey): KeyVersion {
  const v = key.versions[key.versions.length - 1];
  if (!v) throw new Error('key without versions');
  return v;
}

function findVersion(key: VaultKey, version: string): KeyVersion {
  if (version === '') return latest(key);
  const v = key.versions.find((x) => x.version === version);
  if (!v) {
    throw new VaultError(
      404,
      'KeyNotFound',
      `A key with (name/id) ${key.name}/${version} was not found in this key vault.`,
    );
  }
  return v;
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw badParameter(
      `The request URI contains an invalid name: ${name}. Names are 1-127 alphanumerics and dashes.`,
    );
  }
}

function badParameter(message: string): VaultError {
  return new VaultError(400, 'BadParameter', message);
}

function deletedNotFound(name: string): VaultError {
  return new VaultError(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
}

function numericDate(field: 'nbf' | 'exp', v: unknown): { nbf?: number; exp?: number } {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw badParameter(`The value of attribute ${field} is invalid.`);
  return { [field]: v };
}

function readTags(v: unknown): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw badParameter('tags must be an object of strings.');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val !== 'string') throw badParameter(`Tag ${k} must be a string.`);
    out[k] = val;
  }
  if (Object.keys(out).length > 15) throw badParameter('A key can have at most 15 tags.');
  return out;
}
