import type { SigningAlg, RsaModulusBits } from '../policy/algorithms';
import type { BackendRef, PublicJwk } from '../policy/key';

/**
 * The contract every key backend implements (PKCS#11, Azure Key Vault, ...). Backends know
 * nothing about scopes, policies or time: they make keys, sign with them, describe them and
 * destroy them. No method ever returns private key material (I3).
 *
 * Errors are KeywardenError with a BACKEND_* code (see src/policy/errors.ts):
 * BACKEND_MODULE_NOT_FOUND, BACKEND_TOKEN_NOT_FOUND, BACKEND_PIN_INCORRECT,
 * BACKEND_MECHANISM_UNSUPPORTED, BACKEND_OBJECT_NOT_FOUND, BACKEND_OBJECT_EXISTS,
 * BACKEND_UNAVAILABLE, BACKEND_UNAUTHORIZED, BACKEND_THROTTLED, BACKEND_KEY_EXPIRED, BACKEND_ERROR.
 */
export interface KeyBackend {
  /** The configured backend name (the key under `backends:` in the config). */
  readonly name: string;
  /** Its registered type (src/backends/registry.ts). */
  readonly type: string;

  /**
   * Chooses the address of a key that does not exist yet (e.g. a random CKA_ID, or a Key Vault
   * key name) so the store can record it *before* generation: a crash between the two leaves
   * a row that reconcile can finish or remove, never an untracked object. Pure; no I/O.
   */
  planKey(request: PlanKeyRequest): BackendRef;

  /** Generates the keypair inside the backend at the planned address and returns its public half. */
  generate(ref: BackendRef, request: GenerateKeyRequest): Promise<GeneratedKey>;

  /**
   * Signs a JWS signing input (`base64url(header) || '.' || base64url(payload)` as bytes) and
   * returns the JWS signature bytes for `alg` (ECDSA as raw r||s). The backend hashes as its
   * mechanism requires.
   */
  sign(ref: BackendRef, alg: SigningAlg, signingInput: Uint8Array): Promise<Uint8Array>;

  /** Public key of an existing key; BACKEND_OBJECT_NOT_FOUND if it does not exist. */
  publicKey(ref: BackendRef, alg: SigningAlg): Promise<PublicJwk>;

  /** True if the object at `ref` exists in the backend. */
  exists(ref: BackendRef): Promise<boolean>;

  /**
   * Destroys the key at `ref`. Destroying a missing key is not an error (idempotent). With `owner`
   * (the store row id the key was made for), objects whose label or tags name another row are
   * left alone: a row whose reference the store changed never destroys another row's key.
   */
  destroy(ref: BackendRef, owner?: string): Promise<void>;

  /** Every object carrying keywarden's label prefix / tag, for orphan detection and hygiene. */
  list(): Promise<BackendObject[]>;

  /**
   * A stable string naming the key object `ref` points at (PKCS#11: the CKA_ID in hex; Key Vault:
   * name/version), the same for a ref and for the inventory entry of its object. Pure; no I/O.
   */
  refIdentity(ref: BackendRef): string;

  /**
   * Stores keywarden's seal of a key (its signature over its own record, see policy/key-seal.ts)
   * in the backend beside the key, where the store cannot change it. Once per key:
   * BACKEND_OBJECT_EXISTS when the key already has a seal, BACKEND_OBJECT_NOT_FOUND when the key
   * does not exist.
   */
  attachSeal(ref: BackendRef, seal: Uint8Array): Promise<void>;

  /**
   * Every private key object (signing-capable key) in the backend, from one listing: what the
   * integrity check needs at each key reload to see that the key a row names still exists and is
   * sealed, without one lookup per row.
   */
  inventory(): Promise<InventoryEntry[]>;

  /**
   * What the backend itself holds for each key (in the order asked): its public key, the scope and
   * row id in its label or tags, its seal, and the validity recorded at creation. The expensive
   * check, done once per row content; linear in the backend's objects, however many are asked
   * (one listing, not one lookup per key). Throws only when the backend as a whole cannot answer.
   */
  inspectKeys(keys: readonly { ref: BackendRef; alg: SigningAlg }[]): Promise<KeyInspection[]>;

  /** Cheap liveness probe for /readyz. Never throws. */
  health(): Promise<BackendHealth>;

  /** Releases sessions and connections. */
  close(): Promise<void>;
}

export interface PlanKeyRequest {
  scope: string;
  /** The store's row id for the key, recorded in the object's label / tags. */
  keyId: string;
}

export interface GenerateKeyRequest {
  alg: SigningAlg;
  rsaBits?: RsaModulusBits;
  scope: string;
  keyId: string;
  /** Written as CKA_START_DATE / Key Vault `nbf`: informational defence in depth. */
  notBefore: Date;
  /** Written as CKA_END_DATE / Key Vault `exp`. keywarden enforces expiry itself first. */
  notAfter: Date;
}

export interface GeneratedKey {
  ref: BackendRef;
  publicJwk: PublicJwk;
}

/** An object found in the backend with keywarden's prefix/tag. */
export interface BackendObject {
  ref: BackendRef;
  /** Label (PKCS#11) or key name (Azure). */
  label: string;
  /** The store row id recovered from the label / tags, when present. */
  keyId: string | null;
  scope: string | null;
  kind: 'private' | 'public' | 'key';
  /** Security attributes where the backend reports them. */
  attributes: {
    sensitive?: boolean;
    extractable?: boolean;
    alwaysSensitive?: boolean;
    neverExtractable?: boolean;
    enabled?: boolean;
  };
}

/** One private key object found by `inventory()`. */
export interface InventoryEntry {
  /** As `refIdentity` gives it for a ref to this object. */
  identity: string;
  ref: BackendRef;
  /** Label (PKCS#11) or key name (Key Vault). */
  label: string;
  /** The store row id in the label / tags, when it is one of keywarden's. */
  keyId: string | null;
  scope: string | null;
  /** The backend holds a seal for this key. */
  sealed: boolean;
}

/** The answer for one key of `inspectKeys`. */
export type KeyInspection =
  | { status: 'found'; facts: BackendKeyFacts }
  /** No private key object at the reference: never made, or destroyed. */
  | { status: 'missing' }
  /** The key exists but cannot be vouched for: its public half is gone, it does not fit the alg, ... */
  | { status: 'unreadable'; problem: string };

/** What the backend says about one key (see `inspectKeys`). Never private key material. */
export interface BackendKeyFacts {
  publicJwk: PublicJwk;
  /** The store row id and scope its label / tags name (null when they name none). */
  keyId: string | null;
  scope: string | null;
  /** The stored seal, or null when the key has none (made before sealing). */
  seal: Uint8Array | null;
  /**
   * The validity recorded at creation (PKCS#11 CKA_START_DATE/CKA_END_DATE of the public key,
   * whole UTC days; Key Vault nbf/exp, seconds). Confirms the times of keys made before sealing.
   */
  validity: { notBefore: Date | null; notAfter: Date | null; precision: 'day' | 'second' };
}

export interface BackendHealth {
  ok: boolean;
  detail: string;
}
