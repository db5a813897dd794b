/**
 * What `hsm check` sees of a backend's objects, whatever the backend: one shape for PKCS#11 tokens
 * (every object, through the optional ObjectLister capability) and for backends that list only
 * keywarden's keys.
 */

/** The application name of a key's seal stored as a data object (PKCS#11 CKA_APPLICATION). */
export const KEY_SEAL_APPLICATION = 'keywarden-key-seal/v1';

/** Kind of an object (PKCS#11's CKA_CLASS; a Key Vault key is `private`). */
export type TokenObjectClass = 'private' | 'public' | 'secret' | 'certificate' | 'data' | 'other';

/** Security-relevant attributes of an object; absent where the token does not report them. */
export interface TokenObjectAttributes {
  token?: boolean;
  private?: boolean;
  sensitive?: boolean;
  extractable?: boolean;
  alwaysSensitive?: boolean;
  neverExtractable?: boolean;
  modifiable?: boolean;
  copyable?: boolean;
  sign?: boolean;
  signRecover?: boolean;
  decrypt?: boolean;
  unwrap?: boolean;
  derive?: boolean;
}

/** Any object in a backend, keywarden's or not, as `hsm check` sees it. Never key material. */
export interface TokenObject {
  class: TokenObjectClass;
  /** CKA_ID as lowercase hex ('' when absent), or the backend's own object id. */
  id: string;
  label: string;
  /** `RSA`, `EC`, `EC_EDWARDS`, `AES`, ... or `0x..`; null for non-key objects. */
  keyType: string | null;
  /** keywarden's scope and row id from the label / tags; null for objects that are not keywarden's. */
  scope: string | null;
  keyId: string | null;
  /** CKA_APPLICATION of a data object (e.g. a key seal's `keywarden-key-seal/v1`), when it has one. */
  application?: string;
  attributes: TokenObjectAttributes;
  /**
   * True when the object's CKA_CLASS cannot be read: a half-written object, what a process killed
   * while the token was creating it leaves behind (seen with SoftHSM2: an object file with no
   * attributes yet). Its class then shows as `other`.
   */
  incomplete?: boolean;
}

/** A keywarden key seal: the data object that sits beside a key pair under the same label. */
export function isKeySeal(o: Pick<TokenObject, 'class' | 'application'>): boolean {
  return o.class === 'data' && o.application === KEY_SEAL_APPLICATION;
}

/** Optional capability of a KeyBackend: list every object it holds, not only keywarden's keys. */
export interface ObjectLister {
  listAllObjects(): Promise<TokenObject[]>;
}

/** True when the backend offers ObjectLister. */
export function canListAllObjects<B extends object>(b: B): b is B & ObjectLister {
  return typeof (b as Partial<ObjectLister>).listAllObjects === 'function';
}
