import * as pkcs11js from 'pkcs11js';
import { RSA_MODULUS_BITS, type SigningAlg } from '../../policy/algorithms';
import { KeywardenError } from '../../policy/errors';
import type { BackendRef, PublicJwk } from '../../policy/key';
import type { Pkcs11BackendConfig } from './config';
import type {
  BackendHealth,
  BackendObject,
  GenerateKeyRequest,
  GeneratedKey,
  InventoryEntry,
  KeyBackend,
  KeyInspection,
  PlanKeyRequest,
} from '../key-backend';
import {
  CkError,
  HANDLE_INVALID_CKRS,
  isCkr,
  isTokenFault,
  STALE_HANDLE_CKRS,
  toKeywardenError,
} from './ck-error';
import { Cryptoki, type Handle } from './cryptoki';
import type { ObjectStoreLock } from './object-store-lock';
import { describeModule, type ModuleDescription } from './describe-token';
import {
  curveFor,
  generateWithHardeningFallback,
  keyLabel,
  keyPairTemplates,
  LABEL_PREFIX,
  keyTypeFor,
  parseKeyLabel,
  signOperation,
  type CurveName,
} from './key-templates';
import { curveOfParams, PUBLIC_KEY_ATTRIBUTES, publicJwkFromAttributes, readUlong } from './public-jwk';
import { parseRef, planRef, toBackendObject, type KeyAddress } from './key-ref';
import { ObjectIndex, type IndexedKey } from './object-index';
import {
  alreadySealed,
  createSealObject,
  createSealObjectUnchecked,
  findSealObjects,
  readSeal,
  sealObjectsByLabel,
} from './seal-objects';
import { SessionPool, type RecoveryBackoff } from './session-pool';
import { describeObject, type TokenObject } from './token-objects';

/** Extras for `openPkcs11Backend`. */
export interface Pkcs11BackendOptions {
  /** Told each time the sessions were re-opened and logged in again after the token dropped them. */
  onSessionsReopened?: () => void;
  /** Upper bound for `health()` (ms). Default 5000. */
  healthTimeoutMs?: number;
  /** How soon a token that failed is tried again (see SessionPool). */
  recovery?: RecoveryBackoff;
}

/** A key object found by a listing. */
interface KeyObjectSummary {
  handle: Handle;
  idHex: string;
  label: string;
}

/** A private key as signing needs it: its handle (per process) and what it can sign. */
interface SigningKey {
  handle: Handle;
  keyType: number;
  curve: CurveName | null;
}

/** How many undrawn plans are remembered (a plan is generated within the same reconcile). */
const DRAWN_HERE_MAX = 10_000;

/**
 * KeyBackend over a PKCS#11 token. Keys live on the token (CKA_TOKEN) as private, sensitive,
 * non-extractable signing keys addressed by a random CKA_ID; signatures run on a pool of
 * logged-in sessions via the asynchronous sign call, so the event loop never waits for the token.
 */
export class Pkcs11Backend implements KeyBackend {
  readonly type = 'pkcs11' as const;
  readonly name: string;
  readonly tokenLabel: string;
  /** Handles this process made or found, so known keys are not searched for (object-index.ts). */
  private readonly index: ObjectIndex;
  /** CKA_IDs planKey drew in this process whose generation has not started (see generateOn). */
  private readonly drawnHere = new Set<string>();
  private closed = false;

  /** Use `openPkcs11Backend`. */
  constructor(
    private readonly ck: Cryptoki,
    config: Pkcs11BackendConfig,
    private readonly pool: SessionPool,
    private readonly objectLock: ObjectStoreLock | null,
    private readonly opts: Pkcs11BackendOptions,
  ) {
    this.name = config.name;
    this.tokenLabel = config.tokenLabel;
    this.index = new ObjectIndex(ck);
  }

  /** Called by the pool whenever sessions were (re-)established: handles may be stale. */
  sessionsReset(generation: number): void {
    this.index.clear();
    if (generation > 1) this.opts.onSessionsReopened?.();
  }

  planKey(request: PlanKeyRequest): BackendRef {
    const ref = planRef(this.name, this.tokenLabel, request);
    this.drawnHere.add(ref.ref.id as string);
    // Plans whose generation never came (the row could not be written) are dropped oldest first.
    if (this.drawnHere.size > DRAWN_HERE_MAX) {
      this.drawnHere.delete(this.drawnHere.values().next().value as string);
    }
    return ref;
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
    return this.exclusively(() => this.generateOn(ref, a, request.alg, t));
  }

  private generateOn(
    ref: BackendRef,
    a: KeyAddress,
    alg: SigningAlg,
    t: ReturnType<typeof keyPairTemplates>,
  ): Promise<GeneratedKey> {
    return this.run(`generating ${alg} key ${a.label}`, async (s) => {
      // Is the CKA_ID free? One this process drew itself (planKey, 128 random bits, moments ago)
      // is, without a search: SoftHSM2 reads every object on the token for one (~45 ms a key on
      // average while 1,000 keys fill it), and only a PIN holder could have made an object with it
      // since, who can sign with any key anyway. A CKA_ID this process knows is taken; any other
      // (a retry of a leftover, a ref from the store) is searched for.
      const drawnHere = this.drawnHere.delete(a.idHex);
      if (
        this.index.confirmedKey(s, a) !== undefined ||
        (!drawnHere && this.ck.findObjects(s, [{ type: pkcs11js.CKA_ID, value: a.id }]).length > 0)
      ) {
        throw new KeywardenError('BACKEND_OBJECT_EXISTS', `PKCS#11: an object with CKA_ID ${a.idHex} exists`);
      }
      const generated = await generateWithHardeningFallback(t, (tt) =>
        this.ck.generateKeyPair(s, tt.mechanism, tt.publicTemplate, tt.privateTemplate),
      );
      const kp = generated.keyPair;
      if (generated.dropped.length > 0) {
        // Names only, nothing secret. The key itself keeps the record: `hsm check` reads the
        // attributes back and reports it (modifiable, copyable, can-sign-recover).
        process.emitWarning(
          `PKCS#11 token '${this.tokenLabel}' refused the key template of ${a.label} ` +
            `(${String(generated.refusal)}); generated it without ${generated.dropped.join(', ')}`,
          { code: 'KEYWARDEN_PKCS11_HARDENING_DROPPED' },
        );
      }
      try {
        const publicJwk = this.readPublicJwk(s, kp.publicKey, alg);
        this.index.rememberKey(a.idHex, {
          privateKey: kp.privateKey,
          keyType: keyTypeFor(alg),
          curve: curveFor(alg),
          publicKey: kp.publicKey,
          label: a.label,
          generatedHere: true,
        });
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
      // The hot path: a kept handle is not checked first; the token refusing it is the check.
      const indexed = this.index.key(a.idHex);
      let key: SigningKey = indexed ? signingKey(indexed) : this.findPrivateKey(s, a);
      this.checkAlg(a, key, alg);
      try {
        return await this.ck.sign(s, op.mechanism, key.handle, op.data);
      } catch (e) {
        if (!indexed || !isCkr(e, ...STALE_HANDLE_CKRS)) throw e;
        // Destroyed or re-created by another process: look it up again, once.
        this.index.forgetKey(a.idHex);
        key = this.findPrivateKey(s, a);
        this.checkAlg(a, key, alg);
        return await this.ck.sign(s, op.mechanism, key.handle, op.data);
      }
    });
  }

  async publicKey(ref: BackendRef, alg: SigningAlg): Promise<PublicJwk> {
    const a = this.address(ref);
    // Reads attributes of an object another process may be destroying (a revocation).
    return this.exclusively(() =>
      this.run(`reading public key ${a.label}`, (s) => {
        const handle =
          this.index.confirmedPublicKey(s, a) ??
          this.single(this.findKeyHandles(s, a, pkcs11js.CKO_PUBLIC_KEY), a, 'public key');
        this.index.rememberPublicKey(a.idHex, handle);
        return this.readPublicJwk(s, handle, alg);
      }),
    );
  }

  async exists(ref: BackendRef): Promise<boolean> {
    const a = this.address(ref);
    // Under the object lock: a known key is confirmed by reading its object's attributes. The
    // token is probed afterwards, so "no" from a token that lost its objects is not an answer.
    return this.onObjectStore(
      `looking up ${a.label}`,
      (s) =>
        this.index.confirmedKey(s, a) !== undefined ||
        this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY).length > 0,
    );
  }

  async destroy(ref: BackendRef, owner?: string): Promise<void> {
    const a = this.address(ref);
    // An object labelled for another row is not `owner`'s to destroy (nor is its seal).
    const mine = (label: string) => {
      const keyId = parseKeyLabel(label).keyId;
      return owner === undefined || keyId === null || keyId === owner;
    };
    await this.onObjectStore(`destroying ${a.label}`, (s) => {
      const keyHandles = [
        ...this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY),
        ...this.findKeyHandles(s, a, pkcs11js.CKO_PUBLIC_KEY),
      ].filter((h) => mine(this.labelOf(s, h)));
      // The seal goes with the key (by the objects' own label, and the planned one if they are gone).
      const labels = new Set([a.label, ...keyHandles.map((h) => this.labelOf(s, h))].filter(mine));
      // Half-written objects of this key (a generation killed midway: no class, or no label yet)
      // are provably its own when they carry its random CKA_ID or its exact label.
      const partial = [
        ...this.ck.findObjects(s, [{ type: pkcs11js.CKA_ID, value: a.id }]),
        ...this.ck.findObjects(s, [{ type: pkcs11js.CKA_LABEL, value: a.label }]),
      ].filter((h) => mine(this.labelOf(s, h)));
      const byHandle = new Map<string, Handle>();
      for (const h of [
        ...keyHandles,
        ...[...labels].flatMap((l) => (l ? findSealObjects(this.ck, s, l) : [])),
        ...partial,
      ])
        byHandle.set(h.toString('hex'), h);
      const handles = [...byHandle.values()];
      this.index.forgetKey(a.idHex);
      for (const l of labels) this.index.forgetSeal(l);
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

  refIdentity(ref: BackendRef): string {
    return this.address(ref).idHex;
  }

  async attachSeal(ref: BackendRef, seal: Uint8Array): Promise<void> {
    const a = this.address(ref);
    await this.onObjectStore(`sealing ${a.label}`, (s) => {
      const indexed = this.index.confirmedKey(s, a);
      const handle =
        indexed?.privateKey ??
        this.single(this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY), a, 'private key');
      const label = indexed?.label || this.labelOf(s, handle) || a.label;
      // A seal this process made is known without a search.
      if (this.index.confirmedSeal(s, label)) throw alreadySealed(label);
      if (indexed?.generatedHere) {
        // Nor is the token searched for the seal of a key this process generated: its label names
        // a keyId drawn for that generation, so only a process that copied it could have sealed it
        // meanwhile, and the next listing (inventory) then sees two seals for one label and the
        // inspection refuses the key. Every other key's seal is searched for.
        indexed.generatedHere = false;
        this.index.rememberSeal(label, createSealObjectUnchecked(this.ck, s, label, seal));
      } else {
        this.index.rememberSeal(label, createSealObject(this.ck, s, label, seal));
      }
    });
  }

  async inventory(): Promise<InventoryEntry[]> {
    return this.onObjectStore('listing keys', (s) => {
      const sealed = sealObjectsByLabel(this.ck, s);
      const privates = this.listKeyObjects(s, pkcs11js.CKO_PRIVATE_KEY);
      this.reconcileIndex(privates, sealed);
      return privates.map((o) => ({
        identity: o.idHex,
        ref: { backend: this.name, ref: { tokenLabel: this.tokenLabel, id: o.idHex, label: o.label } },
        label: o.label,
        ...parseKeyLabel(o.label),
        sealed: o.label !== '' && sealed.has(o.label),
      }));
    });
  }

  /**
   * Keys whose private and public halves and seal this process knows (it made or found them, and a
   * read of each object confirms it) are answered from those objects alone. The rest take one pass
   * over the token: every private and public key's CKA_ID and label, then the public key, dates
   * and seal of just the keys asked for. SoftHSM2 reads every object on each C_FindObjects, so this
   * stays linear where a search per key would be quadratic.
   */
  async inspectKeys(keys: readonly { ref: BackendRef; alg: SigningAlg }[]): Promise<KeyInspection[]> {
    if (keys.length === 0) return [];
    const addresses = keys.map((k) => this.address(k.ref));
    return this.onObjectStore(`inspecting ${keys.length} key(s)`, (s) => {
      const known = keys.map((k, i) => this.inspectIndexed(s, addresses[i] as KeyAddress, k.alg));
      if (known.every((answer) => answer !== undefined)) return known;
      const byId = (cls: number) => {
        const map = new Map<string, KeyObjectSummary[]>();
        for (const o of this.listKeyObjects(s, cls)) map.set(o.idHex, [...(map.get(o.idHex) ?? []), o]);
        return map;
      };
      const privates = byId(pkcs11js.CKO_PRIVATE_KEY);
      const publics = byId(pkcs11js.CKO_PUBLIC_KEY);
      const seals = sealObjectsByLabel(this.ck, s);
      return keys.map((k, i): KeyInspection => {
        const answer = known[i];
        if (answer) return answer;
        const a = addresses[i] as KeyAddress;
        const priv = privates.get(a.idHex) ?? [];
        const pub = publics.get(a.idHex) ?? [];
        if (priv.length === 0) return { status: 'missing' };
        if (priv.length > 1 || pub.length > 1) {
          return { status: 'unreadable', problem: `several objects share CKA_ID ${a.idHex}` };
        }
        const label = (priv[0] as KeyObjectSummary).label;
        if (pub.length === 0)
          return { status: 'unreadable', problem: `no public key object with CKA_ID ${a.idHex}` };
        const handle = (pub[0] as KeyObjectSummary).handle;
        return this.inspection(s, handle, label, label === '' ? undefined : seals.get(label), k.alg);
      });
    });
  }

  /**
   * The inspection of a key from the objects this process knows, or undefined when it does not know
   * them all or one no longer answers as itself (the caller then searches the token). A listing
   * (inventory) drops keys whose CKA_ID another process made a second object with.
   */
  private inspectIndexed(s: Handle, a: KeyAddress, alg: SigningAlg): KeyInspection | undefined {
    const key = this.index.confirmedKey(s, a);
    const publicKey = key && this.index.confirmedPublicKey(s, a);
    const seal = key && key.label !== '' ? this.index.confirmedSeal(s, key.label) : undefined;
    if (!key || !publicKey || !seal) return undefined;
    return this.inspection(s, publicKey, key.label, [seal], alg);
  }

  /** A found key's facts: its public key and dates (from the public half), its label and its seal. */
  private inspection(
    s: Handle,
    publicKey: Handle,
    label: string,
    seals: readonly Handle[] | undefined,
    alg: SigningAlg,
  ): KeyInspection {
    try {
      const publicJwk = this.readPublicJwk(s, publicKey, alg);
      // Dates come from the public half: SoftHSM 2.6 fails reading them from private keys.
      const day = (type: number) => this.readDate(s, publicKey, type);
      return {
        status: 'found',
        facts: {
          publicJwk,
          ...parseKeyLabel(label),
          seal: label === '' ? null : readSeal(this.ck, s, label, seals),
          validity: {
            notBefore: day(pkcs11js.CKA_START_DATE),
            notAfter: day(pkcs11js.CKA_END_DATE),
            precision: 'day',
          },
        },
      };
    } catch (e) {
      if (isTokenFault(e)) throw e;
      return { status: 'unreadable', problem: (e as Error).message };
    }
  }

  /**
   * CKA_ID (hex) and label of every key object of one class, both read in one call per object
   * (SoftHSM2 re-reads the object's file on each call); one at a time where the token refuses one.
   */
  private listKeyObjects(s: Handle, cls: number): KeyObjectSummary[] {
    return this.ck.findObjects(s, [{ type: pkcs11js.CKA_CLASS, value: cls }]).map((handle) => {
      try {
        const attrs = this.ck.getAttributes(s, handle, [pkcs11js.CKA_ID, pkcs11js.CKA_LABEL]);
        return {
          handle,
          idHex: attrs.get(pkcs11js.CKA_ID)?.toString('hex') ?? '',
          label: attrs.get(pkcs11js.CKA_LABEL)?.toString('utf8') ?? '',
        };
      } catch (e) {
        if (isTokenFault(e) || !(e instanceof CkError)) throw e;
        return {
          handle,
          idHex: this.ck.tryGetAttribute(s, handle, pkcs11js.CKA_ID)?.toString('hex') ?? '',
          label: this.labelOf(s, handle),
        };
      }
    });
  }

  /**
   * A full listing is the truth the index is held against: keys and seals it knows that the token
   * no longer has (destroyed by another process), or has under another handle or several times
   * (a CKA_ID or label another process reused), are forgotten, so that every later lookup of them
   * searches the token, and an inspection reports what the search finds.
   */
  private reconcileIndex(privates: readonly KeyObjectSummary[], seals: ReadonlyMap<string, Handle[]>): void {
    const listed = new Map<string, Handle[]>();
    for (const o of privates) listed.set(o.idHex, [...(listed.get(o.idHex) ?? []), o.handle]);
    this.index.retainKeys((idHex, key) => {
      const found = listed.get(idHex);
      return found?.length === 1 && (found[0] as Handle).equals(key.privateKey);
    });
    this.index.retainSeals((label, handle) => {
      const found = seals.get(label);
      return found?.length === 1 && (found[0] as Handle).equals(handle);
    });
  }

  /** Every object visible to the logged-in user, whatever its label: for `hsm check` hygiene. */
  async listAllObjects(): Promise<TokenObject[]> {
    return this.onObjectStore('listing objects', (s) =>
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
        this.probeToken();
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
    this.index.clear();
    await this.pool.close();
    this.ck.release();
    this.objectLock?.release();
  }

  /**
   * Work that creates, destroys or walks the token's objects runs one at a time per module in this
   * process, queued with key generation: SoftHSM2 failed (CKR_FUNCTION_FAILED, once a segfault)
   * when one runtime listed or changed objects while another generated a key on the same token.
   * Signing with a known key stays concurrent.
   */
  private onObjectStore<T>(doing: string, fn: (session: Handle) => Promise<T> | T): Promise<T> {
    // A listing or a destruction of a token that lost its store "succeeds" finding nothing: the
    // token is asked afterwards whether it is well, so that never passes for an answer.
    return this.exclusively(() =>
      this.run(doing, async (s) => {
        const out = await fn(s);
        this.probeToken();
        return out;
      }),
    );
  }

  /**
   * One at a time in this process (the module's queue), and, with an object lock, across every
   * keywarden process on the host: SoftHSM2 crashed a process reading objects while another
   * process destroyed objects on the same token (docs/hsm-vendors.md).
   */
  private exclusively<T>(task: () => Promise<T>): Promise<T> {
    const lock = this.objectLock;
    return this.ck.oneAtATime(lock ? () => lock.around(task) : task);
  }

  private run<T>(doing: string, fn: (session: Handle) => Promise<T> | T): Promise<T> {
    if (this.closed)
      return Promise.reject(new KeywardenError('BACKEND_UNAVAILABLE', 'PKCS#11 backend is closed'));
    return this.pool.use(fn).catch((e: unknown) => {
      throw toKeywardenError(e, doing);
    });
  }

  /**
   * Asks the token for its info (C_GetTokenInfo) and checks it still carries our label. A failure
   * is a token fault (the pool re-opens sessions, or re-initialises the module, and the operation
   * runs once more): SoftHSM2 whose token directory vanished finds no objects without an error,
   * but fails this with CKR_GENERAL_ERROR, and keeps failing it until re-initialised.
   */
  private probeToken(): void {
    const slot = this.pool.currentSlot;
    if (!slot) throw new CkError('CKR_TOKEN_NOT_PRESENT', null, 'C_GetTokenInfo', true);
    let label: string;
    try {
      label = this.ck.tokenInfo(slot).label.trimEnd();
    } catch (e) {
      if (e instanceof CkError) throw new CkError(e.ckr, e.rv, e.fn, true);
      throw e;
    }
    if (label !== this.tokenLabel)
      throw new CkError('CKR_TOKEN_NOT_RECOGNIZED', null, 'C_GetTokenInfo', true);
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

  /** C_FindObjects every time the index misses: another process may have made the key. */
  private findPrivateKey(s: Handle, a: KeyAddress): SigningKey {
    const handle = this.single(this.findKeyHandles(s, a, pkcs11js.CKO_PRIVATE_KEY), a, 'private key');
    const attrs = this.ck.getAttributes(s, handle, [pkcs11js.CKA_KEY_TYPE]);
    const keyType = readUlong(attrs.get(pkcs11js.CKA_KEY_TYPE)) ?? -1;
    const curve =
      keyType === pkcs11js.CKK_RSA
        ? null
        : curveOfParams(this.ck.tryGetAttribute(s, handle, pkcs11js.CKA_EC_PARAMS));
    // The label is left unread: this runs outside the object lock (signing), where each attribute
    // read is one more chance to meet SoftHSM2's cross-process race (docs/hsm-vendors.md).
    this.index.rememberKey(a.idHex, {
      privateKey: handle,
      keyType,
      curve,
      publicKey: null,
      label: '',
      generatedHere: false,
    });
    return { handle, keyType, curve };
  }

  private single(found: Handle[], a: KeyAddress, what: string): Handle {
    const [first] = found;
    if (!first) {
      // A token whose store went away finds nothing, without an error: ask it whether it is well.
      this.probeToken();
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

  private checkAlg(a: KeyAddress, key: SigningKey, alg: SigningAlg): void {
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

  /** A CK_DATE attribute, null when absent or empty (pkcs11js throws on an empty one). */
  private readDate(s: Handle, handle: Handle, type: number): Date | null {
    try {
      return ckDateValue(this.ck.tryGetAttribute(s, handle, type));
    } catch (e) {
      if (isTokenFault(e)) throw e;
      return null;
    }
  }

  private labelOf(s: Handle, handle: Handle): string {
    return this.ck.tryGetAttribute(s, handle, pkcs11js.CKA_LABEL)?.toString('utf8') ?? '';
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

/** What signing needs of an indexed key. */
function signingKey(k: IndexedKey): SigningKey {
  return { handle: k.privateKey, keyType: k.keyType, curve: k.curve };
}

/** A CK_DATE (`YYYYMMDD`) as midnight UTC of that day; null when empty or not a date. */
function ckDateValue(b: Buffer | undefined): Date | null {
  const m = b && /^(\d{4})(\d{2})(\d{2})$/.exec(b.toString('ascii'));
  if (!m) return null;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return Number.isNaN(d.getTime()) ? null : d;
}
