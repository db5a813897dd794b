import * as pkcs11js from 'pkcs11js';
import { CkError, isTokenFault } from './ck-error';
import type { Cryptoki, Handle } from './cryptoki';
import type { CurveName } from './key-templates';
import type { KeyAddress } from './key-ref';
import { readUlong } from './public-jwk';
import { isSealObject } from './seal-objects';

/** What this process knows of one key pair on the token: handles it made or found, and what it signs. */
export interface IndexedKey {
  privateKey: Handle;
  keyType: number;
  curve: CurveName | null;
  /** The public half's handle, when this process made or found it. */
  publicKey: Handle | null;
  /** The private half's CKA_LABEL (the seal is tied to the key by it); '' when not read (found while signing). */
  label: string;
}

/**
 * This process's index of token objects: CKA_ID → key pair handles, label → seal handle. SoftHSM2
 * answers every C_FindObjects by reading every object on the token (88 ms at 4,000 objects, on the
 * event loop), so lookups of objects this process made or found go through here instead.
 *
 * It is filled only by what this process generated, created or found, and is never the whole
 * truth: a miss means "search the token" (another process may have made the object), and a hit
 * is only a hint, checked by reading the object's own attributes (one object, not the token), or,
 * for signing, by the token refusing a stale handle; either way a hint that fails is dropped and
 * the token searched once. Object handles are only valid in the module instance and sessions they
 * were obtained in: the backend clears the index whenever the session pool re-opens its sessions
 * or re-initialises the module.
 */
export class ObjectIndex {
  private readonly keys = new Map<string, IndexedKey>();
  private readonly seals = new Map<string, Handle>();

  constructor(private readonly ck: Cryptoki) {}

  /**
   * The key as this process knows it, if its private handle still names a private key with the
   * key's CKA_ID: one read of that object, where a C_FindObjects on SoftHSM2 reads every object on
   * the token. Anything else (not known, an object destroyed meanwhile, a handle a token reused)
   * is a miss, forgotten, and the caller searches.
   */
  confirmedKey(session: Handle, a: KeyAddress): IndexedKey | undefined {
    const known = this.keys.get(a.idHex);
    if (!known) return undefined;
    if (this.names(session, known.privateKey, pkcs11js.CKO_PRIVATE_KEY, a)) return known;
    this.keys.delete(a.idHex);
    return undefined;
  }

  /** The public half's handle this process knows, if it still names the key's public key (as above). */
  confirmedPublicKey(session: Handle, a: KeyAddress): Handle | undefined {
    const known = this.keys.get(a.idHex)?.publicKey;
    if (!known) return undefined;
    if (this.names(session, known, pkcs11js.CKO_PUBLIC_KEY, a)) return known;
    this.keys.delete(a.idHex);
    return undefined;
  }

  /** The seal object of `label` this process knows, if it still is that seal (as above). */
  confirmedSeal(session: Handle, label: string): Handle | undefined {
    const known = this.seals.get(label);
    if (!known) return undefined;
    if (isSealObject(this.ck, session, known, label)) return known;
    this.seals.delete(label);
    return undefined;
  }

  /** The key pair with CKA_ID `idHex` (hex), as last made or found here. */
  key(idHex: string): IndexedKey | undefined {
    return this.keys.get(idHex);
  }

  rememberKey(idHex: string, key: IndexedKey): void {
    this.keys.set(idHex, key);
  }

  /** Adds the public half's handle to a known key (a no-op when the key is not known). */
  rememberPublicKey(idHex: string, handle: Handle): void {
    const key = this.keys.get(idHex);
    if (key) key.publicKey = handle;
  }

  forgetKey(idHex: string): void {
    this.keys.delete(idHex);
  }

  rememberSeal(label: string, handle: Handle): void {
    this.seals.set(label, handle);
  }

  forgetSeal(label: string): void {
    this.seals.delete(label);
  }

  /** Keeps only the keys `keep` approves of (after a full listing of the token). */
  retainKeys(keep: (idHex: string, key: IndexedKey) => boolean): void {
    for (const [idHex, key] of this.keys) if (!keep(idHex, key)) this.keys.delete(idHex);
  }

  /** Keeps only the seals `keep` approves of (after a full listing of the token). */
  retainSeals(keep: (label: string, handle: Handle) => boolean): void {
    for (const [label, handle] of this.seals) if (!keep(label, handle)) this.seals.delete(label);
  }

  /** Whether `handle` names an object of class `cls` with the key's CKA_ID (read from the object). */
  private names(session: Handle, handle: Handle, cls: number, a: KeyAddress): boolean {
    try {
      const attrs = this.ck.getAttributes(session, handle, [pkcs11js.CKA_CLASS, pkcs11js.CKA_ID]);
      return (
        readUlong(attrs.get(pkcs11js.CKA_CLASS)) === cls && attrs.get(pkcs11js.CKA_ID)?.equals(a.id) === true
      );
    } catch (e) {
      // A stale handle answers with an error (which one varies by module): the search decides.
      if (isTokenFault(e) || !(e instanceof CkError)) throw e;
      return false;
    }
  }

  /** Forgets everything: the handles name nothing in a new session set or module instance. */
  clear(): void {
    this.keys.clear();
    this.seals.clear();
  }
}
