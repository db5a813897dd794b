import * as pkcs11js from 'pkcs11js';
import { RSA_MODULUS_BITS, type SigningAlg } from '../../policy/algorithms';
import { KeywardenError } from '../../policy/errors';
import type { BackendRef, PublicJwk } from '../../policy/key';
import type { Pkcs11BackendConfig } from '../../policy/scope';
import type {
  BackendHealth,
  BackendObject,
  GenerateKeyRequest,
  GeneratedKey,
  KeyBackend,
  PlanKeyRequest,
} from '../key-backend';
import { CkError, HANDLE_INVALID_CKRS, isCkr, toKeywardenError } from './ck-error';
import { Cryptoki, type Handle } from './cryptoki';
import { describeModule, type ModuleDescription } from './describe-token';
import {
  curveFor,
  keyLabel,
  keyPairTemplates,
  LABEL_PREFIX,
  keyTypeFor,
  signOperation,
  type CurveName,
} from './key-templates';
import { curveOfParams, PUBLIC_KEY_ATTRIBUTES, publicJwkFromAttributes, readUlong } from './public-jwk';
import { parseRef, planRef, toBackendObject, type KeyAddress } from './key-ref';
import { SessionPool } from './session-pool';
import { describeObject, type TokenObject } from './token-objects';

/** Extras for `openPkcs11Backend`. */
export interface Pkcs11BackendOptions {
  /** Told each time the sessions were re-opened and logged in again after the token dropped them. */
  onSessionsReopened?: () => void;
  /** Upper bound for `health()` (ms). Default 5000. */
  healthTimeoutMs?: number;
}

/** What the process knows about a private key: its handle (per process) and what it can sign. */
interface CachedKey {
  handle: Handle;
  keyType: number;
  curve: CurveName | null;
}

/**
 * KeyBackend over a PKCS#11 token. Keys live on the token (CKA_TOKEN) as private, sensitive,
 * non-extractable signing keys addressed by a random CKA_ID; signatures run on a pool of
 * logged-in sessions via the asynchronous sign call, so the event loop never waits for the token.
 */
export class Pkcs11Backend implements KeyBackend {
  readonly type = 'pkcs11' as const;
  readonly name: string;
  readonly tokenLabel: string;
  private readonly keys = new Map<string, CachedKey>();
  private closed = false;

  /** Use `openPkcs11Backend`. */
  constructor(
    private readonly ck: Cryptoki,
    config: Pkcs11BackendConfig,
    private readonly pool: SessionPool,
    private readonly opts: Pkcs11BackendOptions,
  ) {
    this.name = config.name;
    this.tokenLabel = config.tokenLabel;
  }

  /** Called by the pool whenever sessions were (re-)established: handles may be stale. */
  sessionsReset(generation: number): void {
    this.keys.clear();
    if (generation > 1) this.opts.onSessionsReopened?.();
  }

  planKey(request: PlanKeyRequest): BackendRef {
    return planRef(this.name, this.tokenLabel, request);
  }

  async generate(ref: BackendRef, request: GenerateKeyRequest): Promise<GeneratedKey> {
    const a = this.address(ref);
    if (a.label !== keyLabel(request.scope, request.keyId)) {
      throw new KeywardenError(
        'INTERNAL',
        `ref label '${a.label}' does not match scope/keyId of the request`,
      );
    }
    if (Number.isNaN(request.notBefore.getTime()) || Number.isNaN(request.notAfter.getTime())) {
      throw new KeywardenError('INTERNAL', 'generate: notBefore/notAfter must be valid dates');
    }
    const rsaBits = request.rsaBits ?? 2048;
    if (!RSA_MODULUS_BITS.includes(rsaBits)) {
      throw new KeywardenError('BACKEND_MECHANISM_UNSUPPORTED', `RSA modulus of ${String(rsaBits)} bits`);
    }
    const t = keyPairTemplates({ ...request, rsaBits, id: a.id, label: a.label });
    // One generation at a time per module in this process, queued before a session is taken (so
    // waiting generations never hold the sessions signing needs): SoftHSM2 answered concurrent
    // C_GenerateKeyPair calls on one token with CKR_GENERAL_ERROR now and then (2 of 1,000 in
    // the scale benchmark, one in an HA test run).
    return this.ck.oneAtATime(() => this.generateOn(ref, a, request.alg, t));
  }

  private generateOn(
    ref: BackendRef,
    a: KeyAddress,
    alg: SigningAlg,
    t: ReturnType<typeof keyPairTemplates>,
  ): Promise<GeneratedKey> {
    return this.run(`generating ${alg} key ${a.label}`, async (s) => {
      if (this.ck.findObjects(s, [{ type: pkcs11js.CKA_ID, value: a.id }]).length > 0) {
        throw new KeywardenError('BACKEND_OBJECT_EXISTS', `PKCS#11: an object with CKA_ID ${a.idHex} exists`);
      }
      const kp = await this.ck.generateKeyPair(s, t.mechanism, t.publicTemplate, t.privateTemplate);
      try {
        const publicJwk = this.readPublicJwk(s, kp.publicKey, alg);
        this.keys.set(a.idHex, { handle: kp.privateKey, keyType: keyTypeFor(alg), curve: curveFor(alg) });
        return { ref, publicJwk };
      } catch (e) {
        // No half-made key stays behind.
        this.destroyHandles(s, [kp.privateKey, kp.publicKey]);
        throw e;
      }
    });
  }

  async sign(ref: BackendRef, alg: SigningAlg, signingInput: Uint8Array): Promise<Uint8Array> {
    const a = this.address(ref);
    const op = signOperation(alg, signingInput);
    return this.run(`signing ${alg} with ${a.label}`, async (s) => {
      let key = this.keys.get(a.idHex) ?? this.findPrivateKey(s, a);
      this.checkAlg(a, key, alg);
      try {
        return await this.ck.sign(s, op.mechanism, key.handle, op.data);
      } catch (e) {
        if (!isCkr(e, ...HANDLE_INVALID_CKRS)) throw e;
        // Destroyed or re-created by another process: look it up again, once.
        this.keys.delete(a.idHex);
        key = this.findPrivateKey(s, a);
        this.checkAlg(a, key, alg);
        return await this.ck.sign(s, op.mechanism, key.handle, op.data);
      }
    });
  }

  async publicKey(ref: BackendRef, alg: SigningAlg): Promise<PublicJwk> {
    const a = this.address(ref);
    return this.run(`reading public key ${a.label}`, (s) => {
      const found = this.ck.findObjects(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_ID, value: a.id },
      ]);
      const handle = this.single(found, a, 'public key');
      return this.readPublicJwk(s, handle, alg);
    });
  }

  async exists(ref: BackendRef): Promise<boolean> {
    const a = this.address(ref);
    return this.run(
      `looking up ${a.label}`,
      (s) => this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY).length > 0,
    );
  }

  async destroy(ref: BackendRef): Promise<void> {
    const a = this.address(ref);
    await this.run(`destroying ${a.label}`, (s) => {
      const handles = [
        ...this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY),
        ...this.findKeyHandles(s, a, pkcs11js.CKO_PUBLIC_KEY),
      ];
      this.keys.delete(a.idHex);
      for (const h of handles) {
        try {
          this.ck.destroyObject(s, h);
        } catch (e) {
          // Gone already (another process destroyed it meanwhile): that is the goal.
          if (!isCkr(e, ...HANDLE_INVALID_CKRS)) throw e;
        }
      }
    });
  }

  async list(): Promise<BackendObject[]> {
    const all = await this.listAllObjects();
    return all
      .filter((o) => o.label.startsWith(LABEL_PREFIX) && (o.class === 'private' || o.class === 'public'))
      .map((o) => toBackendObject(o, this.name, this.tokenLabel));
  }

  /** Every object visible to the logged-in user, whatever its label: for `hsm check` hygiene. */
  async listAllObjects(): Promise<TokenObject[]> {
    return this.run('listing objects', (s) =>
      this.ck.findObjects(s, []).map((h) => describeObject(this.ck, s, h)),
    );
  }

  /** Module, slots and this backend's token (label, memory, mechanisms) for `hsm status`. */
  async describeToken(): Promise<ModuleDescription> {
    if (this.closed) throw new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed');
    return describeModule(this.ck, this.tokenLabel);
  }

  async health(): Promise<BackendHealth> {
    const timeoutMs = this.opts.healthTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const probe = this.pool.use((s) => {
        // A session that lost its login reports a public state: the pool then logs in again.
        if (!this.ck.isUserSession(s)) throw new CkError('CKR_USER_NOT_LOGGED_IN', null, 'C_GetSessionInfo');
      });
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        timer.unref();
      });
      await Promise.race([probe, timeout]);
      return { ok: true, detail: `token '${this.tokenLabel}' logged in via ${this.ck.modulePath}` };
    } catch (e) {
      return { ok: false, detail: toKeywardenError(e, `health of token '${this.tokenLabel}'`).message };
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.keys.clear();
    await this.pool.close();
    this.ck.release();
  }

  private run<T>(doing: string, fn: (session: Handle) => Promise<T> | T): Promise<T> {
    if (this.closed)
      return Promise.reject(new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed'));
    return this.pool.use(fn).catch((e: unknown) => {
      throw toKeywardenError(e, doing);
    });
  }

  private address(ref: BackendRef): KeyAddress {
    return parseRef(ref, this.name, this.tokenLabel);
  }

  private findKeyHandles(s: Handle, a: KeyAddress, cls: number): Handle[] {
    return this.ck.findObjects(s, [
      { type: pkcs11js.CKA_CLASS, value: cls },
      { type: pkcs11js.CKA_ID, value: a.id },
    ]);
  }

  /** C_FindObjects every time the cache misses: another process may have made the key. */
  private findPrivateKey(s: Handle, a: KeyAddress): CachedKey {
    const handle = this.single(this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY), a, 'private key');
    const attrs = this.ck.getAttributes(s, handle, [pkcs11js.CKA_KEY_TYPE]);
    const keyType = readUlong(attrs.get(pkcs11js.CKA_KEY_TYPE)) ?? -1;
    const curve =
      keyType === pkcs11js.CKK_RSA
        ? null
        : curveOfParams(this.ck.tryGetAttribute(s, handle, pkcs11js.CKA_EC_PARAMS));
    const key = { handle, keyType, curve };
    this.keys.set(a.idHex, key);
    return key;
  }

  private single(found: Handle[], a: KeyAddress, what: string): Handle {
    const [first] = found;
    if (!first) {
      throw new KeywardenError(
        'BACKEND_OBJECT_NOT_FOUND',
        `PKCS#11: no ${what} with CKA_ID ${a.idHex} (${a.label})`,
      );
    }
    if (found.length > 1) {
      throw new KeywardenError('BACKEND_ERROR', `PKCS#11: ${found.length} ${what}s share CKA_ID ${a.idHex}`);
    }
    return first;
  }

  private checkAlg(a: KeyAddress, key: CachedKey, alg: SigningAlg): void {
    if (key.keyType !== keyTypeFor(alg) || key.curve !== curveFor(alg)) {
      throw new KeywardenError(
        'BACKEND_MECHANISM_UNSUPPORTED',
        `PKCS#11: key ${a.label} (key type 0x${key.keyType.toString(16)}, curve ${key.curve ?? 'none'}) cannot sign ${alg}`,
      );
    }
  }

  private readPublicJwk(s: Handle, handle: Handle, alg: SigningAlg): PublicJwk {
    const keyType = readUlong(
      this.ck.getAttributes(s, handle, [pkcs11js.CKA_KEY_TYPE]).get(pkcs11js.CKA_KEY_TYPE),
    );
    if (keyType !== keyTypeFor(alg)) {
      throw new KeywardenError(
        'BACKEND_MECHANISM_UNSUPPORTED',
        `PKCS#11: public key type does not fit ${alg}`,
      );
    }
    const types = keyType === pkcs11js.CKK_RSA ? PUBLIC_KEY_ATTRIBUTES.rsa : PUBLIC_KEY_ATTRIBUTES.ec;
    const jwk = publicJwkFromAttributes(keyType, this.ck.getAttributes(s, handle, [...types]));
    if (jwk.crv !== (curveFor(alg) ?? undefined)) {
      throw new KeywardenError(
        'BACKEND_MECHANISM_UNSUPPORTED',
        `PKCS#11: key on curve ${String(jwk.crv)} cannot do ${alg}`,
      );
    }
    return jwk;
  }

  private destroyHandles(s: Handle, handles: Handle[]): void {
    for (const h of handles) {
      try {
        this.ck.destroyObject(s, h);
      } catch {
        // Best effort while already failing; reconcile's orphan report catches leftovers.
      }
    }
  }
}
