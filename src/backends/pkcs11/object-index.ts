import type { Handle } from './cryptoki';
import type { CurveName } from './key-templates';

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

  /** The seal object carrying `label`, as last made or found here. */
  seal(label: string): Handle | undefined {
    return this.seals.get(label);
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

  /** Forgets everything: the handles name nothing in a new session set or module instance. */
  clear(): void {
    this.keys.clear();
    this.seals.clear();
  }
}
